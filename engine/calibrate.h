/*
 * calibrate.h - which layers to share: the layer-to-layer similarity of
 * attention on a calibration text (Shared Attention paper, section 3).
 *
 * sim[a][b] = mean over heads h and query positions i of
 *             cos( P_a[h][i][0..i], P_b[h][i][0..i] )
 * where P_l is layer l's softmax attention (no sharing, no re-balancing).
 * The diagonal is 1. share_plan_auto() turns the matrix into spans.
 *
 * The text is run in chunks of `chunk` tokens with a context of at most
 * n_ctx tokens; memory is n_layer x n_head x chunk x n_ctx floats.
 */
#ifndef SA_CALIBRATE_H
#define SA_CALIBRATE_H

#include "defaults.h"
#include "share.h"

#include <stddef.h>
#include <stdint.h>

struct model;

#define CALIB_DEFAULT_THRESHOLD ((float)SA_DEFAULT_SHARE_THRESHOLD) /* defaults.h */

/* A short English story written for this purpose, used when no text is given. */
extern const char calib_builtin_text[];

/* Fill sim [n_layer * n_layer] from n tokens (the caller adds BOS). */
int calib_similarity(const struct model *m, const int32_t *tokens, size_t n, uint32_t n_ctx, int n_threads,
                     float *sim);

/* Tokenize text (calib_builtin_text if NULL), compute the similarity and the
 * auto plan at threshold. sim may be NULL. On failure why (if why_len) says the
 * cause, e.g. a context or a tokenization too short to compare layers. */
int calib_auto_plan(const struct model *m, const char *text, int n_threads, float threshold,
                    struct share_plan *plan, float *sim, char *why, size_t why_len);

#endif
