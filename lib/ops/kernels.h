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
#include <stdint.h>

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

/* The bf16 layout of a cin x cout 1x1 conv's weights, as op_pwconv_bf16 and
 * op_pwconv_amx read them and op_fold_bf16 writes them: input channels in pairs
 * (k = 2p, 2p + 1), cout padded to a multiple of 16, and each (pair, column) one 32-bit
 * word of two bf16 values, the even channel in the low half:
 *     wbf[(p * cout16 + j) * 2 + e] = bf16(w[2p + e][j]),   zero past cin or cout.
 * One 64-byte row of 16 words is what vdpbf16ps multiplies with a broadcast input pair.
 * The pairs are padded with zero rows to a multiple of 16, so that every 16 pairs x 16
 * columns are one AMX B tile (op_pwconv_amx.c); op_pwconv_bf16 stops at the last real
 * pair. */
#define BF16_COLS 16
#define BF16_PAIR_BLOCK 16
static inline int bf16_pairs(int cin) {
    return (cin + 1) / 2;
}
static inline int bf16_pairs_padded(int cin) {
    return (bf16_pairs(cin) + BF16_PAIR_BLOCK - 1) / BF16_PAIR_BLOCK * BF16_PAIR_BLOCK;
}
static inline int bf16_cout_padded(int cout) {
    return (cout + BF16_COLS - 1) / BF16_COLS * BF16_COLS;
}
/* uint16_t elements of a packed matrix. */
static inline size_t bf16_packed_elems(int cin, int cout) {
    return (size_t)bf16_pairs_padded(cin) * (size_t)bf16_cout_padded(cout) * 2;
}
/* The largest cin op_pwconv_bf16 takes (its on-stack row buffer holds a few rows of
 * cin); wider layers stay fp32 in a bf16 model (EfficientDet's widest is 3456). */
#define BF16_MAX_CIN 16384

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
    /* The bf16 precision mode's kernels: NULL at every level but avx512, where they need
     * the AVX512_BF16 extension on top (cpu.h: cpu_check_bf16). */
    void (*pwconv_bf16)(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias,
                        act_kind act, tensor *out);
    void (*fold_bf16)(threadpool *tp, const float *w, const float *s, int rows, int cols, uint16_t *dst);
    /* The same 1x1 conv as pwconv_bf16 on AMX tiles (avx512 level only; a context runs it
     * when core/amx.c says this process can: the CPU, the OS and a self-test). */
    void (*pwconv_amx)(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias, act_kind act,
                       tensor *out);
} kernel_table;

/* One per level compiled in (lib/ops/kernels_isa.c); on x86-64 all three. */
extern const kernel_table kernels_baseline;
#if defined(__x86_64__)
extern const kernel_table kernels_avx2;
extern const kernel_table kernels_avx512;
#endif

#endif
