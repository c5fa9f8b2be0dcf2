/*
 * libeffdet verification and profiling hooks: views of the network's intermediate
 * tensors, the candidates post-processing starts from, per-op timing, what the CPU
 * offers the kernels, and the engine's own input normalisation. For the parity tests,
 * effdet-detect's --dump/--cpu, effdet-bench and reference tooling; they expose the
 * engine's internals and may change between versions. The stable API is effdet.h.
 */
#ifndef EFFDET_DEBUG_H
#define EFFDET_DEBUG_H

#include <stddef.h>
#include <stdint.h>

#include "effdet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------- tensors (lib/core/context.c) */

typedef enum {
    EFFDET_T_FEAT,     /* backbone features feeding the BiFPN, index 0..2 = P3..P5 */
    EFFDET_T_FPN_IN,   /* extra levels made from P5, index 0..1 = P6, P7 */
    EFFDET_T_FPN,      /* BiFPN outputs, index 0..4 = P3..P7 */
    EFFDET_T_CLASS,    /* class logits (pre-sigmoid), index 0..4 = P3..P7 */
    EFFDET_T_BOX,      /* box deltas (ty, tx, th, tw), index 0..4 = P3..P7 */
} effdet_tensor_kind;

/* A view of an activation in the context's arena: channels-last (NHWC, N = 1). */
typedef struct {
    const float *data;
    int h, w, c;
} effdet_tensor;

/* After effdet_forward(). The class and box outputs are always there; the others only
 * in a context that keeps them (effdet_context_keep_tensors; otherwise EFFDET_ERR_ARG),
 * because the memory plan reuses their memory as soon as the pass is done with them. */
effdet_status effdet_get_tensor(const effdet_context *ctx, effdet_tensor_kind kind, int index,
                                effdet_tensor *out);

/* Re-plan ctx's arena so that feat, fpn_in and fpn_out stay alive to the end of every
 * pass (for verification; the arena grows by their size). Not while a pass runs. */
effdet_status effdet_context_keep_tensors(effdet_context *ctx, effdet_error *err);

/* Bytes of ctx's arena (effdet_info.arena_bytes is a 1-thread context's; more threads
 * add a band buffer each). */
size_t effdet_context_arena_bytes(const effdet_context *ctx);

/* ------------------------------------------- timing (lib/core/context.c, forward.c) */

/* Wall time of the last forward pass, in milliseconds, by part and by op kind. */
typedef enum {
    EFFDET_OP_STEM, EFFDET_OP_PWCONV, EFFDET_OP_DWCONV, EFFDET_OP_SE, EFFDET_OP_POOL,
    EFFDET_OP_UPSAMPLE, EFFDET_OP_FUSE, EFFDET_OP_OTHER, EFFDET_OP_COUNT
} effdet_op_kind;

typedef struct {
    double backbone_ms, bifpn_ms, heads_ms, total_ms;
    double op_ms[EFFDET_OP_COUNT];
} effdet_forward_timing;

/* Per-op timing costs a clock read per op; off by default. */
void effdet_context_set_profiling(effdet_context *ctx, int on);
const effdet_forward_timing *effdet_context_timing(const effdet_context *ctx);
const char *effdet_op_kind_name(effdet_op_kind k);

/* --------------------------------------------------- candidates (lib/core/detect.c) */

/* The candidates post-processing starts from (after the last effdet_forward()): the k
 * largest class logits over all levels, descending, with their global anchor index and
 * 0-based class. For verifying a model against a reference; returns how many were
 * written (at most k and at most max_detection_points), or -1 on bad arguments. */
int effdet_topk_candidates(effdet_context *ctx, int k, float *logit, int32_t *anchor, int32_t *cls);

/* ------------------------------------------------------------- CPU (lib/core/cpu.c) */

#define EFFDET_CPU_MAX_FEATURES 32
#define EFFDET_CPU_MAX_LEVELS 3

/* What CPUID/XGETBV report and which kernel level a context would run. */
typedef struct {
    char vendor[13];
    char brand[49];
    int num_features;
    struct {
        const char *name; /* e.g. "avx2", "os_avx512" (XCR0: the OS saves the state) */
        int present;
    } features[EFFDET_CPU_MAX_FEATURES];
    int num_levels;
    const char *levels[EFFDET_CPU_MAX_LEVELS]; /* levels this CPU can run, lowest first */
    const char *selected; /* the level effdet_context_create() would pick; NULL on error */
} effdet_cpu_report;

/* Fill r for this CPU, applying `request` as EFFDET_ISA (NULL or "" = the best level).
 * When the request names an unknown level or one the CPU lacks, r is still filled
 * (selected = NULL) and the call fails with EFFDET_ERR_ARG and a message naming EFFDET_ISA. */
effdet_status effdet_cpu_describe(const char *request, effdet_cpu_report *r, effdet_error *err);

/* ---------------------------------------------------- input (lib/image/letterbox.c) */

/* An 8-bit RGB image (HWC, w x h) through the engine's normalisation ((v - mean) / std
 * in float32), written as NCHW: what effdet_forward() takes. */
void effdet_normalize_nchw(const uint8_t *rgb, int w, int h, float *out_nchw);

#ifdef __cplusplus
}
#endif
#endif
