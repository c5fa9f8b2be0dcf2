/*
 * Internal: the inverse DCTs and colour conversion of the split decoder (jpeg_split.c),
 * computing what libjpeg-turbo's islow family computes: jpeg_idct_islow (8x8) and the
 * reduced jpeg_idct_4x4 / 2x2 / 1x1 of jidctred.c, with Pillow's settings (integer
 * IDCT), and its YCbCr -> RGB conversion.
 *
 * libjpeg-turbo runs SIMD versions of these (AVX2 / SSE2) which keep coefficients and
 * the pass-1 workspace in 16 bits and saturate, while the C code wraps through a
 * 1024-entry range table. The two agree on every block whose values stay in range, so
 * each IDCT checks its block: dequantised coefficients within +-2047 (no 16-bit sum of
 * four overflows), workspace within +-8191, outputs within [-512, 511] before the
 * level shift (where the C range table is a clamp). A block outside returns nonzero
 * and the file goes to the sequential decoder. No real encoder gets near: 8-bit
 * samples give DCT coefficients within +-1024.
 */
#ifndef EFFDET_JPEG_IDCT_H
#define EFFDET_JPEG_IDCT_H

#include <stddef.h>
#include <stdint.h>

/* The largest dequantised coefficient the IDCTs accept. */
#define IDCT_MAX_COEF 2047

/* One block -> size x size samples at out (row stride `stride`): its dequantised DC
 * and n dequantised AC coefficients val[i] at natural indices idx[i] (1..63, each at
 * most once; only those the size reads: see jpeg_split.c's coefs_read). Returns
 * nonzero when the block is out of the checked range (out is then unspecified). size
 * is 1, 2, 4 or 8. */
int idct_block(int size, int32_t dc, const uint8_t *idx, const int32_t *val, int n, uint8_t *out,
               size_t stride);

/* idct_block of a block whose AC coefficients are all zero (dc within IDCT_MAX_COEF). */
void idct_flat(int size, int32_t dc, uint8_t *out, size_t stride);

/* One row of YCbCr samples -> interleaved RGB, libjpeg's ycc_rgb_convert. */
void ycc_to_rgb_row(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, int n, uint8_t *rgb);

#endif
