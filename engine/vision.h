/*
 * vision.h - the engine's optional phiDNN model and its bounded job queue
 * (internal to the engine: the server uses the engine_vision_* API of engine.h).
 *
 * Jobs are submitted from any thread into a FIFO of at most queue_max jobs
 * (waiting + running; full: SA_ERR_BUSY). The engine's step thread runs them
 * in order, one chunk of PHIDNN_CHUNK images (one sgemm per layer) between two
 * language-model steps (vision_run_one, phidnn_run_step), so OpenBLAS stays on
 * that one thread (workers.h) and the decoders wait at most one chunk's compute
 * per step however large the job. The job's callback runs on the step thread,
 * once, with result buffers valid only during the call.
 *
 * Wake-up: vision_submit calls wake(wake_ctx) after the job is queued; the
 * engine's wake locks its mutex and signals its condition variable, and its
 * wait loop checks vision_pending() under that mutex, so no wake-up is lost.
 */
#ifndef SA_VISION_H
#define SA_VISION_H

#include "engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vision;

int vision_create(const char *path, uint32_t queue_max, uint32_t max_images, void (*wake)(void *), void *wake_ctx,
                  struct vision **out, char *msg, size_t msg_len);
/* Queued jobs get their callback with SA_ERR_CANCELLED. Accepts NULL. Not while the
 * step thread may still call vision_run_one. */
void vision_destroy(struct vision *v);
const struct phidnn_info *vision_info(const struct vision *v);
/* Any thread. See engine_vision_submit. */
int vision_submit(struct vision *v, const struct engine_vision_request *req, uint64_t *id);
/* Any thread; NULL-safe. */
bool vision_pending(struct vision *v);
uint32_t vision_queue_depth(struct vision *v);
/* Step thread: one chunk of the current job (starting the head job if none); calls the job's
 * callback when it completes. */
void vision_run_one(struct vision *v);

#endif
