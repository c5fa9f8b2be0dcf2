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

/* Pass-1 sums of a reduced IDCT, kept as slots of one array: 2x2 has an even and an
 * odd sum for each of its 5 columns, 4x4 four sums (two even, two odd) for each of 7;
 * the last slot takes terms with factor 0. */
#define IDCT_SLOTS 29

/* One component's IDCT, prepared when the file's plan is made: its output size and,
 * for each natural index, the range check and (2x2, 4x4) the one or two pass-1 sums
 * the coefficient adds to, with the quantiser folded into the factors. */
typedef struct {
    int size;           /* 1, 2, 4 or 8 */
    uint16_t q[64];     /* natural order */
    uint32_t lim[64];   /* |raw| <= lim[z] exactly when |raw * q[z]| <= IDCT_MAX_COEF */
    uint8_t slot[64][2];
    uint32_t fac[64][2]; /* two's complement; every product in range fits 32 bits */
} idct_plan;

/* size 1, 2, 4 or 8; q the quantiser in natural order. 0 for any other size. */
int idct_plan_init(idct_plan *p, int size, const uint16_t q[64]);

/* One 1x1 or 8x8 block -> size x size samples at out (row stride `stride`) from the
 * split decoder's entries (jpeg_entropy.h): e[0] the DC (its true value is dc), then
 * value * 256 + natural index for each AC coefficient the size reads, then 0.
 * Returns the entries consumed, or 0 when a value is out of the checked range or the
 * size is another (out is then unspecified). */
int idct_block_entries(const idct_plan *p, int64_t dc, const int32_t *e, uint8_t *out, size_t stride);

/* 2x2 and 4x4 blocks go by groups: up to IDCT_LANES blocks of one component side by
 * side in a row, whose pass-1 sums are collected block by block (in the order of the
 * data) and then turned into samples all at once, the loops running across the
 * blocks. A group starts zeroed; a lane never added stays a flat mid-grey block. */
#define IDCT_LANES 8
typedef struct {
    uint32_t s[IDCT_SLOTS][IDCT_LANES];
} idct_group;

/* Block `lane` of the group from its entries, as idct_block_entries (the group must
 * be zeroed, that lane not added yet). Returns the entries consumed, or 0. */
int idct_group_add(const idct_plan *p, int64_t dc, const int32_t *e, idct_group *g, int lane);

/* Lanes 0 .. nlanes - 1 -> samples, lane i at out + i * size. 0 when every value was
 * in range. */
int idct_group_store(const idct_plan *p, const idct_group *g, int nlanes, uint8_t *out, size_t stride);

/* One row of n samples -> 2n: libjpeg's h2v1_fancy_upsample (n > 2: 3/4 of the nearer
 * sample and 1/4 of the further one, the ends copied) or, not fancy, h2v1_upsample
 * (each sample twice). */
void h2v1_row(const uint8_t *in, int n, int fancy, uint8_t *out);

/* One row of YCbCr samples -> interleaved RGB, libjpeg's ycc_rgb_convert. */
void ycc_to_rgb_row(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, int n, uint8_t *rgb);

#endif
