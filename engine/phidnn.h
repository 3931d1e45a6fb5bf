/*
 * phidnn.h - Perceptual Deep Neural Networks (phiDNN; Vargas, Liao & Kanzaki,
 * "Perceptual Deep Neural Networks: Adversarial Robustness through Input
 * Recreation", arXiv 2009.01110): an image classifier that corrupts its input
 * with fresh randomness, recreates it with a learned network R, and classifies
 * the recreation:  f(x) = C(R(T_xi(x))).
 *
 * Modes (one classifier C per mode, trained on that mode's recreations):
 *   off       f(x) = C_off(x)                                  (the bare classifier)
 *   identity  f(x) = C_id(R_id(x))                             (R trained without corruption)
 *   sr        f(x) = C_sr(R_sr(clip(down_s(x) + sigma * n, 0, 1)))   n ~ N(0, 1) per pixel,
 *             down_s the s x s area mean (s = phidnn.sr.scale = 2); R_sr first up-samples x2
 *   inpaint   f(x) = C_inp(sum_k M_k . R_inp([x . (1 - M_k), M_k]))   K = 4 masks, the four
 *             phases of the 2x2 grid (vision_ops.h vops_grid_mask): every output pixel is
 *             predicted from its context without seeing its own value
 *
 * Networks (all convs 3x3 pad 1, vision_ops.h layouts; widths from metadata):
 *   R: conv s1 cin->r1 relu, conv s2 r1->r2 relu, conv s1 r2->r2 relu, conv s1 r2->r1 relu,
 *      nearest up x2, conv s1 r1->r3 relu, conv s1 r3->C sigmoid     (cin = C, inpaint C+1)
 *   C: conv s1 C->c1 relu, maxpool2, conv s1 c1->c2 relu, maxpool2, dense c2*H*W/16->d1 relu,
 *      dense d1->n_classes
 *
 * File (GGUF, general.architecture = "phidnn"; written by tests/tools/phidnn/export.py):
 *   phidnn.input.{channels,height,width} u32     phidnn.classes  [str]
 *   phidnn.modes [str] (subset of the four)     phidnn.accuracy [f32] per mode (percent)
 *   phidnn.recreator.widths [u32 r1,r2,r3]      phidnn.classifier.widths [u32 c1,c2,d1]
 *   phidnn.sr.scale u32 (2)  phidnn.sr.sigma f32  phidnn.inpaint.k u32 (4)
 *   phidnn.inpaint.partition str ("grid": the default; a job may ask for a random one)
 *   phidnn.accuracy.inpaint_random f32 (optional: inpaint accuracy with random partitions)
 *   tensors <mode>.r.{e1,e2,e3,d1,d2,d3}.{weight,bias}, <mode>.c.{c1,c2,f1,f2}.{weight,bias},
 *   F32; conv weight ne = [cin*9, cout], dense weight ne = [in, out], bias ne = [n].
 * Every key, shape, type and value is validated (weights must be finite); a bad file gets
 * SA_ERR_BAD_MODEL with a message naming the key or tensor, never a crash.
 *
 * Randomness: one vops_rng per call, seeded with job->seed. Units (image b, sample s) are
 * taken in order b = 0..n-1, s = 0..S-1; mode sr draws H/s * W/s normals per unit, in
 * row-major order per channel; inpaint with random_partition draws one mask index
 * vops_rng_index(K) per pixel, row-major (M_k = the pixels drawn k; the grid draws nothing).
 * The other modes (and the grid) draw nothing and are deterministic, so for them
 * samples > 1 is computed once.
 *
 * Threading: a struct phidnn is immutable after load and may be shared; phidnn_forward
 * calls OpenBLAS, so inside an engine it runs on the step thread only (workers.h); a
 * program without an engine (saserve recreate, check-model) calls it on its own thread.
 *
 * Public: this is the engine's vision header. engine.h includes it for the types of its
 * engine_vision_* API (modes, phidnn_info), and the command line (server/cli_vision.c)
 * loads and runs a model with the calls below, without an engine. vision.h (the engine's
 * job queue) is internal.
 */
#ifndef SA_PHIDNN_H
#define SA_PHIDNN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum phidnn_mode {
    PHIDNN_MODE_OFF = 0,
    PHIDNN_MODE_IDENTITY,
    PHIDNN_MODE_SR,
    PHIDNN_MODE_INPAINT,
    PHIDNN_MODE_COUNT
};

#define PHIDNN_MAX_CLASSES 256
#define PHIDNN_MAX_CLASS_NAME 64
#define PHIDNN_MAX_SAMPLES 8
#define PHIDNN_MAX_SIDE 256
#define PHIDNN_MAX_WIDTH 512
#define PHIDNN_CHUNK 64 /* R/C images per sgemm batch */

/* "off", "identity", "sr", "inpaint"; NULL for anything else. */
const char *phidnn_mode_name(enum phidnn_mode m);
/* The mode for a name (exact, n bytes), or -1. */
int phidnn_mode_parse(const char *s, size_t n);

struct phidnn;
struct gguf;

struct phidnn_info {
    char name[64];                    /* general.name ("phidnn" if absent) */
    uint32_t channels, height, width; /* input shape (CHW) */
    uint32_t n_classes;
    char classes[PHIDNN_MAX_CLASSES][PHIDNN_MAX_CLASS_NAME];
    bool has_mode[PHIDNN_MODE_COUNT];
    float accuracy[PHIDNN_MODE_COUNT]; /* recorded at export, percent; NAN if absent */
    float accuracy_inpaint_random;     /* inpaint with the random partition; NAN if absent */
    uint32_t sr_scale, inpaint_k;
    float sr_sigma;
    uint32_t r_widths[3], c_widths[3];
    uint64_t n_params;
};

/* True if path is a readable GGUF file whose general.architecture is "phidnn" (anything
 * else: not a phiDNN file, for another loader to judge and report). */
bool phidnn_is_file(const char *path);
/* Load and validate a file. On error *out is NULL, msg names the key/tensor. */
int phidnn_load(const char *path, struct phidnn **out, char *msg, size_t msg_len);
/* Same over an open gguf; takes ownership of g on success AND on failure. */
int phidnn_load_gguf(struct gguf *g, struct phidnn **out, char *msg, size_t msg_len);
void phidnn_free(struct phidnn *p); /* accepts NULL */
const struct phidnn_info *phidnn_get_info(const struct phidnn *p);

struct phidnn_job {
    enum phidnn_mode mode;
    uint64_t seed;
    uint32_t samples;     /* 1..PHIDNN_MAX_SAMPLES: probabilities are averaged over them */
    uint32_t n_images;
    const float *images;  /* [n_images][C*H*W], values in [0, 1] (borrowed) */
    float *probs;         /* out [n_images][n_classes]: mean softmax over the samples */
    float *logits;        /* out or NULL: [n_images][n_classes], sample 0's logits */
    float *recreated;     /* out or NULL: [n_images][C*H*W], sample 0's R output (off: x) */
    float *corrupted;     /* out or NULL: [n_images][C*H*W], sample 0's T(x) shown at full size
                           * (sr: nearest up-sampled; inpaint: x with mask 0 removed) */
    bool random_partition; /* inpaint: a seeded random 4-way partition per sample instead of the grid */
};

/* Run a job. Scratch (a few tens of MB at most, PHIDNN_CHUNK images) is malloc'd per call.
 * Returns 0, SA_ERR_INVALID_ARG (n_images 0, samples out of range), SA_ERR_UNSUPPORTED
 * (mode not in the file) or SA_ERR_NOMEM. Step thread only (OpenBLAS). */
int phidnn_forward(const struct phidnn *p, const struct phidnn_job *job);

/* The same pass one chunk at a time, so a caller can interleave other work (the engine runs
 * one chunk between two language-model steps). begin validates as phidnn_forward does and
 * allocates the scratch; each step computes the next PHIDNN_CHUNK R images (the noise stream
 * continues across steps, so the result is phidnn_forward's exactly) and returns true once
 * the job is complete; end frees (accepts NULL; may be called before completion). The job's
 * buffers are borrowed until end. Step thread only. */
struct phidnn_run;
int phidnn_run_begin(const struct phidnn *p, const struct phidnn_job *job, struct phidnn_run **out);
bool phidnn_run_step(struct phidnn_run *r);
void phidnn_run_end(struct phidnn_run *r);

#endif
