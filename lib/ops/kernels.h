/*
 * Internal: the compute kernels as a table of function pointers, one table per
 * instruction-set level. The kernel files (lib/ops/op_*.c, declared in ops.h) are compiled
 * once per level with that level's -march (mk/kernels.mk); a context picks one table at
 * creation from CPUID or EFFDET_ISA (cpu.h) and the forward pass calls through it. The
 * tables are const: nothing is selected or patched at run time beyond that pointer.
 */
#ifndef EFFDET_KERNELS_H
#define EFFDET_KERNELS_H

#include <stddef.h>

#include "core/threadpool.h"

typedef struct {
    float *data;
    int h, w, c;
    int block; /* the arena block holding data, plus 1 (0: not from the arena); kernels ignore it */
} tensor;

static inline size_t tensor_numel(const tensor *t) {
    return (size_t)t->h * t->w * t->c;
}

typedef enum { ACT_NONE = 0, ACT_SWISH, ACT_SIGMOID } act_kind;

/* Same signatures and meaning as the op_* functions of ops.h. */
typedef struct {
    const char *isa; /* "baseline", "avx2", "avx512" */
    void (*conv2d)(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
                   int pad_top, int pad_left, act_kind act, tensor *out);
    void (*dwconv)(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
                   int pad_top, int pad_left, act_kind act, tensor *out);
    void (*dwconv_sum)(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
                       int pad_top, int pad_left, act_kind act, tensor *out, float *row_sums);
    void (*pwconv)(threadpool *tp, const tensor *in, const float *w, const float *bias, act_kind act,
                   tensor *out);
    void (*se_gates)(threadpool *tp, const float *row_sums, int rows, int npix, int c, const float *w1,
                     const float *b1, int rd, const float *w2, const float *b2, float *scratch, float *gate);
    void (*scale_rows)(threadpool *tp, const float *src, const float *s, int rows, int cols, float *dst);
    void (*scale_channels)(threadpool *tp, tensor *x, const float *s);
    void (*maxpool3s2)(threadpool *tp, const tensor *in, int pad_top, int pad_left, tensor *out);
    void (*upsample_nearest)(threadpool *tp, const tensor *in, tensor *out);
    void (*fuse)(threadpool *tp, const tensor *const *inputs, int n, const float *weights, act_kind act,
                 tensor *out);
    void (*activate)(threadpool *tp, float *x, size_t n, act_kind act);
    void (*add)(threadpool *tp, float *x, const float *y, size_t n);
} kernel_table;

/* One per level compiled in (lib/ops/kernels_isa.c); on x86-64 all three. */
extern const kernel_table kernels_baseline;
#if defined(__x86_64__)
extern const kernel_table kernels_avx2;
extern const kernel_table kernels_avx512;
#endif

#endif
