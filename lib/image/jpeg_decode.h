/*
 * Internal: the JPEG decoder's pieces shared by the sequential decoder (jpeg_decode.c)
 * and the banded one (jpeg_bands.c): the error guard, the output settings, and the
 * pool-aware entry point the engine uses.
 */
#ifndef EFFDET_JPEG_DECODE_H
#define EFFDET_JPEG_DECODE_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h> /* jpeglib.h needs FILE */

#include <jpeglib.h>

#include "core/threadpool.h"
#include "effdet.h"

/* libjpeg's default error_exit calls exit(); ours jumps back to the caller with the
 * library's own message text kept for the effdet_error. Warnings that mean invented
 * pixels are errors too (jpeg_decode.c). */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_guard;

struct jpeg_error_mgr *jpeg_guard_init(jpeg_guard *g);

/* Pillow's decoder settings (islow IDCT, fancy upsampling) and, when opts allows it,
 * the DCT scale for opts' target. Call after jpeg_read_header. */
void jpeg_configure_output(struct jpeg_decompress_struct *ci, const effdet_decode_opts *opts);
int jpeg_choose_dct_denominator(int w, int h, int target_w, int target_h);

/* effdet_image_decode_jpeg with a thread pool: the same pixels and errors; files that
 * the banded decoder can take (jpeg_bands.c) are decoded on tp's threads. */
effdet_status image_decode_jpeg_pool(const uint8_t *data, size_t len, const effdet_decode_opts *opts,
                                     threadpool *tp, effdet_image *out, effdet_error *err);

/* The banded decode of a baseline file with restart markers, where no component is
 * upsampled vertically (4:2:0 only at a DCT scale): EFFDET_OK with out filled, or any other status (out
 * untouched, nothing to report: the caller decodes sequentially). jpeg_bands.c. */
effdet_status jpeg_decode_bands(const uint8_t *data, size_t len, long long max_pixels,
                                const effdet_decode_opts *opts, threadpool *tp, effdet_image *out);

#endif
