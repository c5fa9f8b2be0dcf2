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

/* The checks before libjpeg sees the bytes (SOI, then a marker's FF), which refuse some
 * files libjpeg would read (junk after SOI is only a warning to it). */
effdet_status check_jpeg_magic(const uint8_t *data, size_t len, effdet_error *err);

/* The probe both pool decoders start from, called after setjmp on ci's guard (libjpeg
 * errors jump there): ci created on data with its headers read; 1 when the frame is
 * within max_pixels, sequential Huffman (not progressive, not arithmetic) and all in
 * one interleaved scan. */
int jpeg_probe_single_scan(struct jpeg_decompress_struct *ci, const uint8_t *data, size_t len,
                           long long max_pixels);

/* The split decoder's buffers (jpeg_split.c, below). */
typedef struct jpeg_split_scratch jpeg_split_scratch;

/* Pillow's decoder settings (islow IDCT, fancy upsampling) and, when opts allows it,
 * the DCT scale for opts' target. Call after jpeg_read_header. */
void jpeg_configure_output(struct jpeg_decompress_struct *ci, const effdet_decode_opts *opts);
int jpeg_choose_dct_denominator(int w, int h, int target_w, int target_h);

/* effdet_image_decode_jpeg with a thread pool: the same pixels and errors; files that
 * the banded decoder (jpeg_bands.c) or the split decoder (jpeg_split.c, with scratch's
 * buffers; NULL = temporary ones) can take are decoded on tp's threads. */
effdet_status image_decode_jpeg_pool(const uint8_t *data, size_t len, const effdet_decode_opts *opts,
                                     threadpool *tp, jpeg_split_scratch *scratch, effdet_image *out,
                                     effdet_error *err);

/* The banded decode of a baseline file with restart markers, where no component is
 * upsampled vertically (4:2:0 only at a DCT scale): EFFDET_OK with out filled, or any other status (out
 * untouched, nothing to report: the caller decodes sequentially). jpeg_bands.c. */
effdet_status jpeg_decode_bands(const uint8_t *data, size_t len, long long max_pixels,
                                const effdet_decode_opts *opts, threadpool *tp, effdet_image *out);

/* The split decode (jpeg_split.c): baseline Huffman, 8-bit, one interleaved scan,
 * YCbCr or greyscale, no component upsampled vertically or by more than 2 (4:4:4,
 * 4:2:2 or greyscale at any scale, 4:2:0 at a DCT scale). The
 * entropy-coded data is cut into one segment per pool thread: with restart markers,
 * by whole restart intervals; without, every segment after the first is decoded
 * speculatively from the middle of the stream and accepted only where the segment
 * before it, decoded on from its own end, meets it at the same bit at an MCU
 * boundary. Then the IDCT and colour conversion run on the
 * pool by MCU rows. EFFDET_OK with out filled (the sequential decoder's exact pixels),
 * or any other status (out untouched, nothing to report: the caller decodes
 * sequentially, which words every error). Files whose entropy-coded data is shorter
 * than min_scan_bytes are not split. scratch may be NULL (see below). */
effdet_status jpeg_decode_split(const uint8_t *data, size_t len, long long max_pixels,
                                const effdet_decode_opts *opts, threadpool *tp, jpeg_split_scratch *scratch,
                                size_t min_scan_bytes, effdet_image *out);

/* The split decoder's buffers, kept by a context between decodes (a 4K frame needs a
 * few megabytes, and touching fresh pages costs more than the decode gains). NULL
 * scratch: temporary buffers. */
jpeg_split_scratch *jpeg_split_scratch_create(void);
void jpeg_split_scratch_free(jpeg_split_scratch *s);

#endif
