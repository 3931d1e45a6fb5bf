/*
 * infer.h - the Open Inference Protocol (KServe v2) bodies of the phiDNN
 * endpoints: parse and validate POST /v2/models/{name}/infer, and write the
 * model metadata and the inference response. No HTTP and no engine calls here.
 *
 * Request (https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol):
 *   {"id": str?, "parameters": {"recreate": "off|identity|sr|inpaint"?, "seed": uint?,
 *    "samples": 1..8?, "return_recreation": bool?, "partition": "grid"|"random"?}?,
 *    "inputs": [{"name": "image", "datatype": "UINT8"|"FP32", "shape": [B, C, H, W] or [C, H, W],
 *                "data": [...] row-major, flat or nested}],
 *    "outputs": [{"name": "probabilities"|"label"|"class_index"|"recreation"}]?}
 *   UINT8 values are integers 0..255 (scaled by 1/255); FP32 values are numbers in [0, 1].
 *   ?recreate=MODE in the URL wins over parameters.recreate.
 * Response:
 *   {"model_name", "model_version": "1", "id"?, "parameters": {"recreate", "seed", "samples",
 *    "partition" (inpaint only)},
 *    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [B, n_classes], "data"},
 *                {"name": "label", "datatype": "BYTES", "shape": [B], "data": [class name]},
 *                {"name": "class_index", "datatype": "INT64", "shape": [B], "data"},
 *                {"name": "recreation", "datatype": "FP32", "shape": [B, C, H, W], "data"}?]}
 *   The body depends only on the request and the seed (no timings), so the same
 *   request with the same seed gives the same bytes.
 * Errors: 400 invalid_request_error naming the field (inputs[0].shape, inputs[0].datatype,
 * inputs[0].data, parameters.samples, recreate, ...), through request_error (request.h); the
 * message never quotes request bytes.
 *
 * Ownership: returned strings are malloc'd (caller frees); NULL = out of memory.
 * Threads: no shared state.
 */
#ifndef SA_INFER_H
#define SA_INFER_H

#include "engine/engine.h"
#include "request.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INFER_MAX_ID 128

struct infer_request {
    int mode;               /* enum phidnn_mode, or -1 = the default */
    bool mode_from_query;   /* ?recreate= was given */
    bool seed_set;
    uint64_t seed;          /* 0 .. 2^53 - 1 */
    uint32_t samples;       /* 1 .. PHIDNN_MAX_SAMPLES */
    bool return_recreation;
    bool random_partition;  /* parameters.partition = "random" (inpaint) */
    bool want[4];           /* probabilities, label, class_index, recreation */
    char id[INFER_MAX_ID + 1];
    bool has_id;
    uint32_t n_images;
    bool batched;           /* shape had the batch dimension */
    float *images;          /* [n_images][C*H*W] in [0, 1], malloc'd */
};

void infer_request_init(struct infer_request *r);
void infer_request_free(struct infer_request *r);

/* One URL query argument: only "recreate" (a mode name). SA_ERR_INVALID_ARG with err 400 otherwise. */
int infer_query_arg(struct infer_request *r, const char *key, const char *value, struct api_error *err);
/* Parse body[0..len) for a model described by info; max_batch bounds B. 0, or
 * SA_ERR_INVALID_ARG (SA_ERR_NOMEM when out of memory) with err filled. */
int infer_parse(const char *body, size_t len, const struct phidnn_info *info, uint32_t max_batch,
                struct infer_request *r, struct api_error *err);

/* GET /v2/models/{name}: name, versions, platform, inputs, outputs, and a "parameters"
 * object with the recreation modes, their accuracies, class names and limits. */
char *infer_metadata_json(const struct phidnn_info *info, uint32_t max_batch, int default_mode, size_t *len);
/* The response of a finished job (res->error == 0). */
char *infer_response_json(const struct phidnn_info *info, const struct infer_request *r, int mode, uint64_t seed,
                          const struct engine_vision_result *res, size_t *len);

#endif
