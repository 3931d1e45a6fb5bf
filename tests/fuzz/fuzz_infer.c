/*
 * fuzz_infer.c - libFuzzer target: bytes -> infer_parse (the Open Inference
 * Protocol body of POST /v2/models/{name}/infer) for a 1x4x4, 3-class model,
 * then infer_response_json on a made-up result. Any crash, sanitizer report or
 * leak is a bug; so is a rejection without a 4xx/503 status and a param, or an
 * accepted request with a batch outside 1..max_batch or a pixel outside [0, 1].
 */
#include "server/infer.c"
#include "server/request.c"
#include "server/schema.c" /* request.c converts response_format through it */

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct phidnn_info info;
    if (!info.n_classes) {
        snprintf(info.name, sizeof info.name, "tiny");
        info.channels = 1;
        info.height = info.width = 4;
        info.n_classes = 3;
        for (int c = 0; c < 3; c++) snprintf(info.classes[c], sizeof info.classes[c], "class-%d", c);
        for (int m = 0; m < PHIDNN_MODE_COUNT; m++) info.has_mode[m] = true, info.accuracy[m] = 50.0f;
        info.sr_scale = 2;
        info.sr_sigma = 0.1f;
        info.inpaint_k = 4;
    }
    const uint32_t max_batch = 3;
    struct infer_request r;
    struct api_error err;
    memset(&err, 0, sizeof err);
    infer_request_init(&r);
    if (size > 0 && data[0] == 'Q' && size < 64) { /* a query argument: Q key=value */
        char buf[64];
        memcpy(buf, data + 1, size - 1);
        buf[size - 1] = 0;
        char *eq = strchr(buf, '=');
        if (eq) *eq = 0;
        if (infer_query_arg(&r, buf, eq ? eq + 1 : NULL, &err) != 0 && (err.status != 400 || !err.param[0])) abort();
    }
    if (infer_parse((const char *)data, size, &info, max_batch, &r, &err) != 0) {
        if (!((err.status >= 400 && err.status < 500) || err.status == 503) || !err.type) abort();
        if (err.status == 400 && !err.param[0] && strcmp(err.code, "invalid_value") != 0) abort();
    } else {
        if (r.n_images < 1 || r.n_images > max_batch || r.samples < 1 || r.samples > PHIDNN_MAX_SAMPLES) abort();
        for (size_t i = 0; i < (size_t)r.n_images * 16; i++)
            if (!(r.images[i] >= 0.0f && r.images[i] <= 1.0f)) abort();
        float probs[3 * 3], rec[3 * 16];
        for (size_t i = 0; i < (size_t)r.n_images * 3; i++) probs[i] = 1.0f / 3;
        memcpy(rec, r.images, sizeof(float) * 16 * r.n_images);
        struct engine_vision_result res = {.n_images = r.n_images, .n_classes = 3, .probs = probs, .recreated = rec};
        size_t len;
        char *json = infer_response_json(&info, &r, r.mode >= 0 ? r.mode : 0, r.seed, &res, &len);
        if (!json || len == 0) abort();
        free(json);
    }
    infer_request_free(&r);
    return 0;
}
