/*
 * Internal: the first half of an inverted-residual MBConv block fused in bands of output
 * rows (mbconv_bands.c): expand 1x1 + swish, then depthwise k x k + swish with the
 * squeeze-and-excitation row sums, without the full-size expanded tensor (and likewise
 * stem conv + depthwise for the first block). The SE gate
 * and the projection 1x1 run after the sweep (forward.c), because the gate needs the
 * mean over every pixel.
 */
#ifndef EFFDET_MBCONV_BANDS_H
#define EFFDET_MBCONV_BANDS_H

#include "core/context.h"

typedef struct {
    int rows;      /* depthwise output rows per band */
    int in_rows;   /* expanded rows a band needs: (rows - 1) * stride + k */
    size_t floats; /* one thread's band buffer: in_rows x in_w x mid */
} band_shape;

/* The band for an in_w-wide expansion to `mid` channels under window g: as many output
 * rows as keep one band of expanded rows within MBCONV_BAND_BYTES (L2-sized), at least
 * one. */
band_shape mbconv_band_shape(int in_w, int mid, const conv_geom *g);

/* x (h x w x in) -> d (g->out_h x g->out_w x mid) and row_sums (g->out_h x mid), as
 * op_pwconv(swish) then op_dwconv_sum(swish) would give them. Each of the context's
 * threads sweeps its own contiguous share of the output rows with its own band buffer:
 * bands[t * bs.floats ..]. */
void mbconv_expand_dw(effdet_context *ctx, const tensor *x, const block_layers *bl, const conv_geom *g,
                      band_shape bs, float *bands, tensor *d, float *row_sums);

/* The same for the first block, depthwise-separable, whose depthwise input is the stem's
 * output (swish(conv k x k of the image), window sg): stem and depthwise in bands, so the
 * stem's output (D0: 256 x 256 x 32, 8 MiB) never exists whole either. */
void mbconv_stem_dw(effdet_context *ctx, const tensor *image, const conv_layer *stem, const conv_geom *sg,
                    const block_layers *bl, const conv_geom *g, band_shape bs, float *bands, tensor *d,
                    float *row_sums);

#endif
