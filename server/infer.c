/* infer.c - Open Inference Protocol bodies for the phiDNN model; contract in infer.h. */
#include "infer.h"

#include "engine/errors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFER_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))
#define MAX_SEED ((UINT64_C(1) << 53) - 1)

static const char *const output_names[4] = {"probabilities", "label", "class_index", "recreation"};

void infer_request_init(struct infer_request *r)
{
    memset(r, 0, sizeof *r);
    r->mode = -1;
    r->samples = 1;
}

void infer_request_free(struct infer_request *r)
{
    if (!r) return;
    free(r->images);
    r->images = NULL;
}

static void type_error(struct api_error *err, const char *param, const char *what)
{
    request_error(err, param, "'%s' must be %s", param, what);
    err->code = "invalid_type";
}

static bool plain_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 40) return false;
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int parse_mode(const char *s, const char *param, struct api_error *err)
{
    const int m = s ? phidnn_mode_parse(s, strlen(s)) : -1;
    if (m < 0) request_error(err, param, "'%s' must be one of off, identity, sr, inpaint", param);
    return m;
}

static int query_arg(struct infer_request *r, const char *key, const char *value, struct api_error *err)
{
    if (strcmp(key, "recreate") != 0) {
        request_error(err, plain_name(key) ? key : "query", "unknown query parameter (only 'recreate' is accepted)");
        return -1;
    }
    if (r->mode_from_query) {
        request_error(err, "recreate", "'recreate' is given twice");
        return -1;
    }
    const int m = parse_mode(value, "recreate", err);
    if (m < 0) return -1;
    r->mode = m;
    r->mode_from_query = true;
    return 0;
}

/* Flatten nested arrays of numbers into out[0..cap); *n counts every leaf seen. */
static int flatten(const json_t *v, int depth, bool u8, float *out, size_t cap, size_t *n, struct api_error *err)
{
    const char *param = "inputs[0].data";
    if (json_is_array(v)) {
        if (depth > 5) {
            request_error(err, param, "'%s' is nested deeper than the shape", param);
            return -1;
        }
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            if (flatten(e, depth + 1, u8, out, cap, n, err)) return -1;
        }
        return 0;
    }
    float f;
    if (u8) {
        if (!json_is_integer(v)) {
            type_error(err, param, "an array of integers 0..255 for datatype UINT8");
            return -1;
        }
        const json_int_t x = json_integer_value(v);
        if (x < 0 || x > 255) {
            request_error(err, param, "UINT8 value %zu is outside 0..255", *n);
            return -1;
        }
        f = (float)x / 255.0f;
    } else {
        if (!json_is_number(v)) {
            type_error(err, param, "an array of numbers for datatype FP32");
            return -1;
        }
        const double x = json_number_value(v);
        if (!isfinite(x) || x < 0.0 || x > 1.0) {
            request_error(err, param, "FP32 value %zu is not a finite number in [0, 1]", *n);
            return -1;
        }
        f = (float)x;
    }
    if (*n < cap) out[*n] = f;
    (*n)++;
    return 0;
}

static int parse_parameters(const json_t *p, struct infer_request *r, struct api_error *err)
{
    if (!json_is_object(p)) {
        type_error(err, "parameters", "an object");
        return -1;
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)(uintptr_t)p, k, v) {
        if (strcmp(k, "recreate") == 0) {
            if (!json_is_string(v)) {
                type_error(err, "parameters.recreate", "a string");
                return -1;
            }
            const int m = parse_mode(json_string_value(v), "parameters.recreate", err);
            if (m < 0) return -1;
            if (!r->mode_from_query) r->mode = m;
        } else if (strcmp(k, "seed") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > MAX_SEED) {
                request_error(err, "parameters.seed", "'parameters.seed' must be an integer in [0, 2^53-1]");
                return -1;
            }
            r->seed = (uint64_t)json_integer_value(v);
            r->seed_set = true;
        } else if (strcmp(k, "samples") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > PHIDNN_MAX_SAMPLES) {
                request_error(err, "parameters.samples", "'parameters.samples' must be an integer in [1, %d]",
                              PHIDNN_MAX_SAMPLES);
                return -1;
            }
            r->samples = (uint32_t)json_integer_value(v);
        } else if (strcmp(k, "partition") == 0) {
            const char *v_s = json_is_string(v) ? json_string_value(v) : NULL;
            if (!v_s || (strcmp(v_s, "grid") != 0 && strcmp(v_s, "random") != 0)) {
                request_error(err, "parameters.partition", "'parameters.partition' must be \"grid\" or \"random\"");
                return -1;
            }
            r->random_partition = strcmp(v_s, "random") == 0;
        } else if (strcmp(k, "return_recreation") == 0) {
            if (!json_is_boolean(v)) {
                type_error(err, "parameters.return_recreation", "a boolean");
                return -1;
            }
            r->return_recreation = json_is_true(v);
        } else {
            char param[64];
            snprintf(param, sizeof param, "parameters.%s", plain_name(k) ? k : "");
            request_error(err, plain_name(k) ? param : "parameters",
                          "unknown parameter (recreate, seed, samples, return_recreation, partition)");
            return -1;
        }
    }
    return 0;
}

static int parse_outputs(const json_t *o, struct infer_request *r, struct api_error *err)
{
    if (!json_is_array(o) || json_array_size(o) == 0 || json_array_size(o) > 4) {
        type_error(err, "outputs", "an array of 1..4 requested outputs");
        return -1;
    }
    memset(r->want, 0, sizeof r->want);
    size_t i;
    const json_t *e;
    json_array_foreach(o, i, e) {
        const json_t *nm = json_is_object(e) ? json_object_get(e, "name") : NULL;
        int which = -1;
        for (int k = 0; k < 4 && nm && json_is_string(nm); k++)
            if (strcmp(json_string_value(nm), output_names[k]) == 0) which = k;
        if (which < 0) {
            request_error(err, "outputs", "outputs[%zu].name must be probabilities, label, class_index or recreation", i);
            return -1;
        }
        r->want[which] = true;
    }
    if (r->want[3]) r->return_recreation = true;
    return 0;
}

static int parse(const char *body, size_t len, const struct phidnn_info *info, uint32_t max_batch,
                 struct infer_request *r, struct api_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    for (int k = 0; k < 3; k++) r->want[k] = true;
    if (!root) {
        request_error(err, "body", "the body is not valid JSON");
        err->code = "invalid_json";
        goto out;
    }
    if (!json_is_object(root)) {
        type_error(err, "body", "a JSON object (an Open Inference Protocol inference request)");
        goto out;
    }
    bool outputs_given = false;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "id") == 0) {
            if (!json_is_string(v) || json_string_length(v) > INFER_MAX_ID) {
                type_error(err, "id", "a string of at most 128 bytes");
                goto out;
            }
            memcpy(r->id, json_string_value(v), json_string_length(v));
            r->id[json_string_length(v)] = 0;
            r->has_id = true;
        } else if (strcmp(k, "parameters") == 0) {
            if (parse_parameters(v, r, err)) goto out;
        } else if (strcmp(k, "outputs") == 0) {
            if (parse_outputs(v, r, err)) goto out;
            outputs_given = true;
        } else if (strcmp(k, "inputs") != 0) {
            request_error(err, plain_name(k) ? k : NULL, "unknown field (id, parameters, inputs, outputs)");
            goto out;
        }
    }
    if (!outputs_given) r->want[3] = r->return_recreation;
    else if (r->return_recreation) r->want[3] = true;
    const json_t *inputs = json_object_get(root, "inputs");
    if (!inputs) {
        request_error(err, "inputs", "'inputs' is required");
        goto out;
    }
    if (!json_is_array(inputs) || json_array_size(inputs) != 1) {
        type_error(err, "inputs", "an array of exactly one tensor (the image batch)");
        goto out;
    }
    const json_t *in = json_array_get(inputs, 0);
    if (!json_is_object(in)) {
        type_error(err, "inputs[0]", "an object");
        goto out;
    }
    json_object_foreach((json_t *)(uintptr_t)in, k, v) {
        if (strcmp(k, "name") && strcmp(k, "datatype") && strcmp(k, "shape") && strcmp(k, "data") &&
            strcmp(k, "parameters")) {
            request_error(err, "inputs[0]", "unknown field in inputs[0] (name, datatype, shape, data, parameters)");
            goto out;
        }
    }
    const json_t *name = json_object_get(in, "name");
    if (!json_is_string(name) || strcmp(json_string_value(name), "image") != 0) {
        request_error(err, "inputs[0].name", "'inputs[0].name' must be \"image\" (GET /v2/models/{name} lists it)");
        goto out;
    }
    const json_t *dt = json_object_get(in, "datatype");
    const char *dts = json_is_string(dt) ? json_string_value(dt) : NULL;
    const bool u8 = dts && strcmp(dts, "UINT8") == 0;
    if (!dts || (!u8 && strcmp(dts, "FP32") != 0)) {
        request_error(err, "inputs[0].datatype", "'inputs[0].datatype' must be \"UINT8\" or \"FP32\"");
        goto out;
    }
    const json_t *shape = json_object_get(in, "shape");
    const size_t nd = json_is_array(shape) ? json_array_size(shape) : 0;
    long long dims[4] = {0};
    bool shape_ok = nd == 3 || nd == 4;
    for (size_t i = 0; shape_ok && i < nd; i++) {
        const json_t *d = json_array_get(shape, i);
        shape_ok = json_is_integer(d) && json_integer_value(d) >= 0;
        if (shape_ok) dims[i] = json_integer_value(d);
    }
    const long long *chw = nd == 4 ? dims + 1 : dims;
    if (!shape_ok || chw[0] != info->channels || chw[1] != info->height || chw[2] != info->width) {
        request_error(err, "inputs[0].shape", "'inputs[0].shape' must be [B, %u, %u, %u] or [%u, %u, %u]",
                      info->channels, info->height, info->width, info->channels, info->height, info->width);
        goto out;
    }
    const long long batch = nd == 4 ? dims[0] : 1;
    if (batch < 1 || batch > (long long)max_batch) {
        request_error(err, "inputs[0].shape", "batch of %lld images outside 1..%u (vision_max_batch)", batch,
                      max_batch);
        goto out;
    }
    r->batched = nd == 4;
    r->n_images = (uint32_t)batch;
    const size_t want = (size_t)batch * info->channels * info->height * info->width;
    const json_t *data = json_object_get(in, "data");
    if (!json_is_array(data)) {
        type_error(err, "inputs[0].data", "an array (row-major, flat or nested)");
        goto out;
    }
    r->images = malloc(sizeof(float) * want);
    if (!r->images) {
        request_error(err, NULL, "out of memory");
        err->status = 503;
        err->type = "server_error";
        err->code = "out_of_memory";
        goto out;
    }
    size_t n = 0;
    if (flatten(data, 0, u8, r->images, want, &n, err)) goto out;
    if (n != want) {
        request_error(err, "inputs[0].data", "'inputs[0].data' has %zu values; the shape needs %zu", n, want);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* The public entries return SA_ERR_* codes (the helpers above: 0 or -1 with err filled). */
static int err_code(const struct api_error *err) { return err->status == 503 ? SA_ERR_NOMEM : SA_ERR_INVALID_ARG; }

int infer_query_arg(struct infer_request *r, const char *key, const char *value, struct api_error *err)
{
    return query_arg(r, key, value, err) == 0 ? 0 : err_code(err);
}

int infer_parse(const char *body, size_t len, const struct phidnn_info *info, uint32_t max_batch,
                struct infer_request *r, struct api_error *err)
{
    return parse(body, len, info, max_batch, r, err) == 0 ? 0 : err_code(err);
}

static json_t *tensor_meta(const char *name, const char *dt, json_t *shape)
{
    return json_pack("{s:s, s:s, s:o}", "name", name, "datatype", dt, "shape", shape);
}

static char *dump(json_t *root, size_t *len)
{
    char *s = root ? json_dumps(root, INFER_DUMP_FLAGS) : NULL;
    json_decref(root);
    if (s && len) *len = strlen(s);
    return s;
}

char *infer_metadata_json(const struct phidnn_info *info, uint32_t max_batch, int default_mode, size_t *len)
{
    json_t *modes = json_array(), *acc = json_object(), *classes = json_array();
    for (int m = 0; m < PHIDNN_MODE_COUNT; m++) {
        if (!info->has_mode[m]) continue;
        json_array_append_new(modes, json_string(phidnn_mode_name((enum phidnn_mode)m)));
        if (isfinite(info->accuracy[m]))
            json_object_set_new(acc, phidnn_mode_name((enum phidnn_mode)m),
                                json_real(round((double)info->accuracy[m] * 100.0) / 100.0));
    }
    if (info->has_mode[PHIDNN_MODE_INPAINT] && isfinite(info->accuracy_inpaint_random))
        json_object_set_new(acc, "inpaint_random",
                            json_real(round((double)info->accuracy_inpaint_random * 100.0) / 100.0));
    for (uint32_t c = 0; c < info->n_classes; c++) json_array_append_new(classes, json_string(info->classes[c]));
    json_t *root = json_pack(
        "{s:s, s:[s], s:s, s:[o], s:[o,o,o,o], s:{s:o, s:s?, s:o, s:o, s:i, s:i, s:{s:i, s:f}, s:{s:i, s:s, s:[s,s]}}}",
        "name", info->name, "versions", "1", "platform", "saserve-phidnn", "inputs",
        tensor_meta("image", "UINT8", json_pack("[i,i,i,i]", -1, info->channels, info->height, info->width)),
        "outputs", tensor_meta("probabilities", "FP32", json_pack("[i,i]", -1, info->n_classes)),
        tensor_meta("label", "BYTES", json_pack("[i]", -1)), tensor_meta("class_index", "INT64", json_pack("[i]", -1)),
        tensor_meta("recreation", "FP32", json_pack("[i,i,i,i]", -1, info->channels, info->height, info->width)),
        "parameters", "recreation_modes", modes, "default_recreate",
        default_mode >= 0 ? phidnn_mode_name((enum phidnn_mode)default_mode) : NULL, "accuracy", acc, "classes",
        classes, "max_batch", (int)max_batch, "max_samples", PHIDNN_MAX_SAMPLES, "sr", "scale", (int)info->sr_scale,
        "sigma", (double)info->sr_sigma, "inpaint", "masks", (int)info->inpaint_k, "partition", "grid",
        "partitions", "grid", "random");
    return dump(root, len);
}

char *infer_response_json(const struct phidnn_info *info, const struct infer_request *r, int mode, uint64_t seed,
                          const struct engine_vision_result *res, size_t *len)
{
    const uint32_t n = res->n_images, nc = res->n_classes;
    json_t *outputs = json_array();
    if (r->want[0]) {
        json_t *d = json_array();
        for (size_t i = 0; i < (size_t)n * nc; i++) json_array_append_new(d, json_real(res->probs[i]));
        json_array_append_new(outputs, json_pack("{s:s, s:s, s:[i,i], s:o}", "name", "probabilities", "datatype",
                                                 "FP32", "shape", (int)n, (int)nc, "data", d));
    }
    json_t *labels = json_array(), *idx = json_array();
    for (uint32_t i = 0; i < n; i++) {
        uint32_t best = 0;
        for (uint32_t c = 1; c < nc; c++)
            if (res->probs[(size_t)i * nc + c] > res->probs[(size_t)i * nc + best]) best = c;
        json_array_append_new(labels, json_string(info->classes[best]));
        json_array_append_new(idx, json_integer(best));
    }
    if (r->want[1])
        json_array_append_new(outputs, json_pack("{s:s, s:s, s:[i], s:o}", "name", "label", "datatype", "BYTES",
                                                 "shape", (int)n, "data", labels));
    else
        json_decref(labels);
    if (r->want[2])
        json_array_append_new(outputs, json_pack("{s:s, s:s, s:[i], s:o}", "name", "class_index", "datatype",
                                                 "INT64", "shape", (int)n, "data", idx));
    else
        json_decref(idx);
    if (r->want[3] && res->recreated) {
        const size_t chw = (size_t)info->channels * info->height * info->width;
        json_t *d = json_array();
        for (size_t i = 0; i < n * chw; i++) json_array_append_new(d, json_real(res->recreated[i]));
        json_array_append_new(outputs, json_pack("{s:s, s:s, s:[i,i,i,i], s:o}", "name", "recreation", "datatype",
                                                 "FP32", "shape", (int)n, info->channels, info->height,
                                                 info->width, "data", d));
    }
    json_t *root = json_pack("{s:s, s:s, s:{s:s, s:I, s:i}, s:o}", "model_name", info->name, "model_version", "1",
                             "parameters", "recreate", phidnn_mode_name((enum phidnn_mode)mode), "seed",
                             (json_int_t)seed, "samples", (int)r->samples, "outputs", outputs);
    if (root && r->has_id) json_object_set_new(root, "id", json_string(r->id));
    if (root && mode == PHIDNN_MODE_INPAINT)
        json_object_set_new(json_object_get(root, "parameters"), "partition",
                            json_string(r->random_partition ? "random" : "grid"));
    return dump(root, len);
}
