/*
 * Internal: the compute kernels. One op per file (lib/ops/op_*.c; op_dwconv.c holds
 * op_dwconv and its row-summing variant), one calling shape:
 *
 *     void op_NAME(threadpool *tp, <inputs...>, <weights...>, <params...>, <outputs...>);
 *
 * Activations are channels-last (NHWC, batch 1): element (y, x, c) of an h x w x c
 * tensor is data[(y * w + x) * c + ch]. Kernels never allocate; the caller passes every
 * buffer (from the context arena). Work is split across the pool's threads; `tp` may be
 * NULL (run on the calling thread). Weights are in the layouts the model loader
 * repacks them into at load time (noted per op).
 *
 * Every kernel file is compiled once per instruction-set level (mk/kernels.mk) with
 * EFFDET_KERNEL_ISA set to the level's name; the defines below give each copy its own
 * symbols (op_dwconv -> op_dwconv_avx2, ...) and lib/ops/kernels_isa.c gathers them in that
 * level's kernel_table. The rest of the library calls kernels through the table the
 * context selected (kernels.h), never by these names.
 */
#ifndef EFFDET_OPS_H
#define EFFDET_OPS_H

#include <stddef.h>

#include "core/threadpool.h"
#include "ops/kernels.h"

#ifndef EFFDET_KERNEL_ISA
#error "ops.h is for the per-ISA kernel files (mk/kernels.mk); call kernels through kernels.h"
#endif
#define KSYM_PASTE(name, isa) name##_##isa
#define KSYM_(name, isa) KSYM_PASTE(name, isa)
#define KSYM(name) KSYM_(name, EFFDET_KERNEL_ISA)

#define op_conv2d KSYM(op_conv2d)
#define op_dwconv KSYM(op_dwconv)
#define op_dwconv_sum KSYM(op_dwconv_sum)
#define op_pwconv KSYM(op_pwconv)
#define op_pwconv_direct KSYM(op_pwconv_direct)
#define op_pwconv_blas KSYM(op_pwconv_blas)
#define op_se_gates KSYM(op_se_gates)
#define op_scale_rows KSYM(op_scale_rows)
#define op_scale_channels KSYM(op_scale_channels)
#define op_maxpool3s2 KSYM(op_maxpool3s2)
#define op_upsample_nearest KSYM(op_upsample_nearest)
#define op_fuse KSYM(op_fuse)
#define op_activate KSYM(op_activate)
#define op_add KSYM(op_add)
#define op_pwconv_bf16 KSYM(op_pwconv_bf16)
#define op_fold_bf16 KSYM(op_fold_bf16)
#define op_pwconv_amx KSYM(op_pwconv_amx)
#define op_pwconv_amx_emulated KSYM(op_pwconv_amx_emulated)
/* This level's table (lib/ops/kernels_isa.c). */
#define kernels_this_isa KSYM(kernels)

/* Full conv (the stem): in h x w x cin -> out (out->h, out->w set by the caller).
 * w: [ky][kx][cin][cout] (k*k*cin rows of cout), bias[cout] (folded BN). Zero padding,
 * pad_top/pad_left before; the rest of the window past the edge is also zero. */
void op_conv2d(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
               int pad_top, int pad_left, act_kind act, tensor *out);

/* Depthwise conv, k x k, stride 1 or 2: w [ky][kx][c] (k*k rows of c), bias[c]. */
void op_dwconv(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
               int pad_top, int pad_left, act_kind act, tensor *out);

/* op_dwconv that also returns, for every output row y, the sum over that row's pixels of
 * each channel after the activation: row_sums[y * c + ch] (out->h x c floats). Summing
 * these rows gives squeeze-and-excitation its channel means without another pass over
 * the output; per-row sums make the result independent of the thread count. */
void op_dwconv_sum(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
                   int pad_top, int pad_left, act_kind act, tensor *out, float *row_sums);

/* Pointwise 1x1 conv as GEMM: out[h*w x cout] = in[h*w x cin] . w[cin x cout] + bias,
 * then act; cin = in->c, cout = out->c, out->h x out->w = in->h x in->w (set by the
 * caller). Pixel rows split across threads. Runs op_pwconv_direct or op_pwconv_blas,
 * whichever lib/ops/pwconv_table.h (measured per level and shape) says is faster. */
void op_pwconv(threadpool *tp, const tensor *in, const float *w, const float *bias, act_kind act,
               tensor *out);

/* The same conv by OpenBLAS sgemm in row blocks, then bias + act per block. */
void op_pwconv_blas(threadpool *tp, const tensor *in, const float *w, const float *bias, act_kind act,
                    tensor *out);

/* The same conv by our own register-blocked kernel (lib/ops/op_pwconv_direct.c), bias and
 * act applied in registers. */
void op_pwconv_direct(threadpool *tp, const tensor *in, const float *w, const float *bias, act_kind act,
                      tensor *out);

/* The SE gates from op_dwconv_sum's row sums (rows x c, npix pixels in all):
 * gate = sigmoid(W2 . swish(W1 . mean + b1) + b2), c floats. scratch: rd floats. The
 * caller then applies the gate to the projection weights with op_scale_rows (W'[i][:] =
 * gate[i] * W[i][:], since (x * gate) . W = x . (gate * W)), or to x when x is smaller.
 * The FCs are small: tp is accepted for the common shape and not used. */
void op_se_gates(threadpool *tp, const float *row_sums, int rows, int npix, int c, const float *w1,
                 const float *b1, int rd, const float *w2, const float *b2, float *scratch, float *gate);

/* dst[r][j] = src[r][j] * s[r] for a rows x cols matrix; dst does not overlap src. */
void op_scale_rows(threadpool *tp, const float *src, const float *s, int rows, int cols, float *dst);

/* In place: x(y, x, ch) *= s[ch]. */
void op_scale_channels(threadpool *tp, tensor *x, const float *s);

/* Max pool 3x3 stride 2; padding (pad_top/pad_left before, whatever the window needs
 * after) counts as -infinity, i.e. never wins. out->h, out->w set by the caller. */
void op_maxpool3s2(threadpool *tp, const tensor *in, int pad_top, int pad_left, tensor *out);

/* Nearest upsample to out->h x out->w: out (y, x) = in (floor(y * in_h / out_h), floor(x * in_w / out_w)). */
void op_upsample_nearest(threadpool *tp, const tensor *in, tensor *out);

/* Weighted fusion of n same-shape tensors, then act:
 *   weights != NULL (fast normalized fusion): out = sum_i x_i * w_i / (sum_j w_j + 1e-4), with
 *                    w_i = max(0, weights[i]) — effdet multiplies each term, then divides.
 *   weights == NULL (sum fusion, D6/D7):     out = sum_i x_i. */
void op_fuse(threadpool *tp, const tensor *const *inputs, int n, const float *weights, act_kind act,
             tensor *out);

/* Element-wise: x = act(x). */
void op_activate(threadpool *tp, float *x, size_t n, act_kind act);

/* Element-wise: x += y (the MBConv residual). */
void op_add(threadpool *tp, float *x, const float *y, size_t n);

#if defined(__AVX512F__)
/* The bf16 precision mode (lib/ops/op_pwconv_bf16.c; built at the avx512 level only, and
 * run only where the CPU has AVX512_BF16). */

/* op_pwconv with bf16 weights in kernels.h's packed layout (cin = in->c <= BF16_MAX_CIN):
 * each input row rounded to bf16 (nearest even) once, products summed in fp32 by
 * vdpbf16ps, then bias and act in fp32. Pixel rows split across threads. */
void op_pwconv_bf16(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias, act_kind act,
                    tensor *out);

/* Pack a rows x cols fp32 matrix (w[rows][cols], a 1x1 conv's [cin][cout]) into the bf16
 * layout, row r scaled by s[r] first (s NULL: by 1): the model loader's packing and the
 * per-request SE fold (op_scale_rows' bf16 twin), so both round the same way. */
void op_fold_bf16(threadpool *tp, const float *w, const float *s, int rows, int cols, uint16_t *dst);

/* op_pwconv_bf16's result by AMX tiles (lib/ops/op_pwconv_amx.c): same operands, same
 * rounding of the inputs, fp32 sums in the tile unit's order. Only where the CPU has
 * AMX-BF16 and the process was granted its state (core/amx.c). */
void op_pwconv_amx(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias, act_kind act,
                   tensor *out);

/* The same kernel with the tile instructions emulated in C (lib/ops/amx.h), built into the
 * avx512 kernel test only: it runs on any CPU with AVX512_BF16. */
void op_pwconv_amx_emulated(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias,
                            act_kind act, tensor *out);
#endif

#endif
