/*
 * JPEG in and out through libjpeg-turbo, set up the way Pillow decodes (docs/engine.md,
 * "Decoding"): integer "islow" IDCT, fancy chroma upsampling, greyscale replicated to
 * RGB, CMYK converted with Pillow's formula. Untrusted input: errors never abort the process,
 * corrupt-data warnings are errors (no half-grey images), and the pixel limit is
 * enforced from the header before the pixel buffer is allocated.
 * The annotated-image encoder lives here too because it shares the error handling.
 */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>

#include "image/jpeg_decode.h"

#include "core/status.h"

#define DEFAULT_MAX_PIXELS 100000000LL
/* Below this much entropy-coded data a file decodes in about a millisecond on one
 * thread, and splitting it gains less than the threads cost to start. */
#define SPLIT_MIN_SCAN_BYTES (128 * 1024)

/* ------------------------------------------------------------ error manager */

/* libjpeg's default error_exit calls exit(); ours jumps back to the caller with the
 * library's own message text kept for the effdet_error. */
static void guard_error_exit(j_common_ptr cinfo) {
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    g->pub.format_message(cinfo, g->msg);
    longjmp(g->jump, 1);
}

/* Warnings that leave the pixels intact: metadata oddities, and junk bytes between
 * segments (common in camera files; Pillow decodes those images normally). Every other
 * warning means libjpeg is about to invent pixels (premature EOF -> grey fill, bad
 * Huffman code, lost restart marker, ...) and is fatal. A deny-by-default list, so a
 * warning added by a later libjpeg cannot let a damaged image through. */
static int warning_is_harmless(int code) {
    return code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM || code == JWRN_BOGUS_ICC ||
           code == JWRN_EXTRANEOUS_DATA;
}

static void guard_emit_message(j_common_ptr cinfo, int level) {
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    if (level >= 0) return; /* trace messages */
    g->pub.num_warnings++;
    if (warning_is_harmless(g->pub.msg_code)) return;
    g->pub.format_message(cinfo, g->msg);
    longjmp(g->jump, 1);
}

static void guard_output_message(j_common_ptr cinfo) {
    (void)cinfo;
}

struct jpeg_error_mgr *jpeg_guard_init(jpeg_guard *g) {
    jpeg_std_error(&g->pub);
    g->pub.error_exit = guard_error_exit;
    g->pub.emit_message = guard_emit_message;
    g->pub.output_message = guard_output_message;
    g->msg[0] = '\0';
    return &g->pub;
}

/* ---------------------------------------------------------------- sniffing */

/* Name the format of data that is not a JPEG, so the client learns why it was refused. */
static const char *sniff_other_format(const uint8_t *d, size_t n) {
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return "PNG";
    if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) return "GIF";
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return "WebP";
    if (n >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0)) return "TIFF";
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return "BMP";
    if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0) return "HEIF/AVIF/MP4";
    if (n >= 4 && memcmp(d, "%PDF", 4) == 0) return "PDF";
    return NULL;
}

/* Cheap checks before libjpeg sees the bytes: every JPEG starts with SOI (FF D8) and
 * the first marker's FF. */
effdet_status check_jpeg_magic(const uint8_t *data, size_t len, effdet_error *err) {
    if (!data || len == 0) return set_error(err, EFFDET_ERR_IMAGE, "invalid JPEG: empty input");
    const char *other = sniff_other_format(data, len);
    if (other)
        return set_error(err, EFFDET_ERR_IMAGE,
                         "invalid JPEG: the data is a %s image (only JPEG is supported)", other);
    if (len < 4)
        return set_error(err, EFFDET_ERR_IMAGE, "invalid JPEG: input is only %zu byte%s long", len,
                         len == 1 ? "" : "s");
    if (data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF)
        return set_error(err, EFFDET_ERR_IMAGE,
                         "invalid JPEG: no start-of-image marker (first bytes %02x %02x %02x)", data[0],
                         data[1], data[2]);
    return EFFDET_OK;
}

/* ------------------------------------------------------------------ decode */

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_guard guard;
    uint8_t *pixels; /* the RGB result being filled; freed on failure */
    uint8_t *row;    /* one CMYK scanline */
} jpeg_decoder;

/* libjpeg refuses sides above JPEG_MAX_DIMENSION while reading the header, before we can
 * compare with max_pixels: report that as "too large", not as a corrupt file. */
static effdet_status libjpeg_failure(const jpeg_decoder *d, effdet_error *err) {
    if (d->guard.pub.msg_code == JERR_IMAGE_TOO_BIG)
        return set_error(err, EFFDET_ERR_TOO_LARGE, "image too large: %s", d->guard.msg);
    return set_error(err, EFFDET_ERR_IMAGE, "invalid JPEG: %s", d->guard.msg);
}

/* Pillow opens every 4-component JPEG as "CMYK;I" (Adobe's inverted convention, which is
 * also what libjpeg writes), then converts with cmyk2rgb (Pillow >= 4.3, PR #2699):
 * nk = 255 - K, R = nk - MULDIV255(C, nk), with C = 255 - raw. Substituting the inverted
 * values gives R = rawK - rawK * (255 - rawC) / 255 with Pillow's rounding of the product. */
static uint8_t pillow_cmyk_channel(int raw_c, int raw_k) {
    int t = (255 - raw_c) * raw_k + 128;
    int muldiv255 = ((t >> 8) + t) >> 8;
    int v = raw_k - muldiv255;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void cmyk_row_to_rgb(const uint8_t *cmyk, int width, uint8_t *rgb) {
    for (int x = 0; x < width; x++, cmyk += 4, rgb += 3) {
        rgb[0] = pillow_cmyk_channel(cmyk[0], cmyk[3]);
        rgb[1] = pillow_cmyk_channel(cmyk[1], cmyk[3]);
        rgb[2] = pillow_cmyk_channel(cmyk[2], cmyk[3]);
    }
}

/* Largest DCT reduction (1/8, 1/4, 1/2) whose output still covers the target on both
 * axes; 1 (no scaling) when the image is not at least twice the target. */
int jpeg_choose_dct_denominator(int w, int h, int target_w, int target_h) {
    if (target_w <= 0 || target_h <= 0) return 1;
    if (w < 2 * target_w || h < 2 * target_h) return 1;
    for (int denom = 8; denom >= 2; denom /= 2) {
        int ow = (w + denom - 1) / denom, oh = (h + denom - 1) / denom; /* libjpeg rounds up */
        if (ow >= target_w && oh >= target_h) return denom;
    }
    return 1;
}

static effdet_status choose_output_colour(jpeg_decoder *d, effdet_error *err) {
    switch (d->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: /* libjpeg replicates grey to R = G = B, as Pillow's L -> RGB */
    case JCS_YCbCr:
    case JCS_RGB: d->cinfo.out_color_space = JCS_RGB; return EFFDET_OK;
    case JCS_CMYK:
    case JCS_YCCK: d->cinfo.out_color_space = JCS_CMYK; return EFFDET_OK;
    default:
        return set_error(err, EFFDET_ERR_IMAGE, "invalid JPEG: unsupported colour space (%d components)",
                         d->cinfo.num_components);
    }
}

int jpeg_probe_single_scan(struct jpeg_decompress_struct *ci, const uint8_t *data, size_t len,
                           long long max_pixels) {
    jpeg_create_decompress(ci);
    jpeg_mem_src(ci, data, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    long long w = ci->image_width, h = ci->image_height;
    return w > 0 && h > 0 && w * h <= max_pixels && !ci->progressive_mode && !ci->arith_code &&
           ci->comps_in_scan == ci->num_components;
}

/* Pillow's settings; the integer IDCT is also the one libjpeg-turbo has in SIMD. */
void jpeg_configure_output(struct jpeg_decompress_struct *ci, const effdet_decode_opts *opts) {
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    if (opts && opts->allow_dct_scaling) {
        ci->scale_num = 1;
        ci->scale_denom = (unsigned)jpeg_choose_dct_denominator((int)ci->image_width, (int)ci->image_height,
                                                                opts->target_w, opts->target_h);
    }
}

/* Everything after jpeg_read_header; libjpeg errors longjmp out to the caller. */
static effdet_status decode_pixels(jpeg_decoder *d, long long max_pixels, const effdet_decode_opts *opts,
                                   effdet_image *out, effdet_error *err) {
    struct jpeg_decompress_struct *ci = &d->cinfo;
    int w = (int)ci->image_width, h = (int)ci->image_height;
    if (w <= 0 || h <= 0) return set_error(err, EFFDET_ERR_IMAGE, "invalid JPEG: image is %dx%d", w, h);
    if ((long long)w * h > max_pixels)
        return set_error(err, EFFDET_ERR_TOO_LARGE,
                         "image too large: %dx%d = %lld pixels exceeds the limit of %lld", w, h,
                         (long long)w * h, max_pixels);
    effdet_status st = choose_output_colour(d, err);
    if (st != EFFDET_OK) return st;

    jpeg_configure_output(ci, opts);
    jpeg_start_decompress(ci);
    int ow = (int)ci->output_width, oh = (int)ci->output_height;

    d->pixels = malloc((size_t)ow * (size_t)oh * 3);
    if (!d->pixels) return set_error(err, EFFDET_ERR_NOMEM, "decoding a %dx%d JPEG: out of memory", ow, oh);
    int cmyk = ci->out_color_space == JCS_CMYK;
    if (cmyk) {
        d->row = malloc((size_t)ow * 4);
        if (!d->row) return set_error(err, EFFDET_ERR_NOMEM, "decoding a %dx%d JPEG: out of memory", ow, oh);
    }
    while (ci->output_scanline < ci->output_height) {
        uint8_t *dst = d->pixels + (size_t)ci->output_scanline * ow * 3;
        JSAMPROW rows[1] = {cmyk ? d->row : dst};
        if (jpeg_read_scanlines(ci, rows, 1) != 1)
            return set_error(err, EFFDET_ERR_IMAGE, "invalid JPEG: decoder stopped at row %u of %d",
                             ci->output_scanline, oh);
        if (cmyk) cmyk_row_to_rgb(d->row, ow, dst);
    }
    jpeg_finish_decompress(ci);
    out->rgb = d->pixels;
    out->width = ow;
    out->height = oh;
    out->source_width = (int)d->cinfo.image_width;
    out->source_height = (int)d->cinfo.image_height;
    d->pixels = NULL;
    return EFFDET_OK;
}

/* The one libjpeg decoding session behind both entry points: SOI check, header, then
 * (when out is not NULL) the pixels. The setjmp is in this frame, which stays alive
 * for every libjpeg call that can jump back to it. */
static effdet_status run_decoder(const uint8_t *data, size_t len, long long max_pixels,
                                 const effdet_decode_opts *opts, effdet_image *out, int *width, int *height,
                                 effdet_error *err) {
    effdet_status st = check_jpeg_magic(data, len, err);
    if (st != EFFDET_OK) return st;
    jpeg_decoder d;
    memset(&d, 0, sizeof d);
    d.cinfo.err = jpeg_guard_init(&d.guard);
    if (setjmp(d.guard.jump)) {
        st = libjpeg_failure(&d, err);
        goto fail;
    }
    jpeg_create_decompress(&d.cinfo);
    jpeg_mem_src(&d.cinfo, data, (unsigned long)len);
    jpeg_read_header(&d.cinfo, TRUE);
    if (width) *width = (int)d.cinfo.image_width;
    if (height) *height = (int)d.cinfo.image_height;
    st = out ? decode_pixels(&d, max_pixels, opts, out, err) : EFFDET_OK;
fail:
    jpeg_destroy_decompress(&d.cinfo);
    free(d.pixels);
    free(d.row);
    return st;
}

void effdet_decode_opts_default(effdet_decode_opts *o) {
    memset(o, 0, sizeof *o); /* max_pixels 0 = DEFAULT_MAX_PIXELS; no DCT scaling */
}

effdet_status effdet_image_decode_jpeg(const uint8_t *data, size_t len, const effdet_decode_opts *opts,
                                       effdet_image *out, effdet_error *err) {
    return image_decode_jpeg_pool(data, len, opts, NULL, NULL, out, err);
}

effdet_status image_decode_jpeg_pool(const uint8_t *data, size_t len, const effdet_decode_opts *opts,
                                     threadpool *tp, jpeg_split_scratch *scratch, effdet_image *out,
                                     effdet_error *err) {
    if (!out) return set_error(err, EFFDET_ERR_ARG, "effdet_image_decode_jpeg: out is NULL");
    out->rgb = NULL;
    out->width = out->height = out->source_width = out->source_height = 0;
    long long max_pixels = opts && opts->max_pixels ? opts->max_pixels : DEFAULT_MAX_PIXELS;
    if (max_pixels < 0)
        return set_error(err, EFFDET_ERR_ARG, "effdet_decode_opts.max_pixels is negative (%lld)", max_pixels);
    if (opts && opts->allow_dct_scaling && (opts->target_w < 0 || opts->target_h < 0))
        return set_error(err, EFFDET_ERR_ARG, "effdet_decode_opts target size %dx%d is negative",
                         opts->target_w, opts->target_h);
    /* On a pool, large files where no component is upsampled vertically decode in
     * segments (by restart intervals where there are markers, speculatively where
     * not); other restart-marked files (small ones, 4:1:1, ...) decode in bands;
     * anything those paths
     * do not take (or that fails there) goes through the one sequential decoder,
     * which also words every error. */
    if (threadpool_size(tp) > 1 && check_jpeg_magic(data, len, NULL) == EFFDET_OK &&
        (jpeg_decode_split(data, len, max_pixels, opts, tp, scratch, SPLIT_MIN_SCAN_BYTES, out) == EFFDET_OK ||
         jpeg_decode_bands(data, len, max_pixels, opts, tp, out) == EFFDET_OK))
        return EFFDET_OK;
    return run_decoder(data, len, max_pixels, opts, out, NULL, NULL, err);
}

effdet_status effdet_image_probe_jpeg(const uint8_t *data, size_t len, int *width, int *height,
                                      effdet_error *err) {
    return run_decoder(data, len, 0, NULL, NULL, width, height, err);
}

void effdet_image_free(effdet_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

/* ------------------------------------------------------------------ encode */

typedef struct {
    struct jpeg_compress_struct cinfo;
    jpeg_guard guard;
    unsigned char *buf; /* grown by jpeg_mem_dest with malloc */
    unsigned long size;
} jpeg_encoder;

effdet_status effdet_image_encode_jpeg(const effdet_image *img, int quality, uint8_t **out, size_t *len,
                                       effdet_error *err) {
    if (!out || !len) return set_error(err, EFFDET_ERR_ARG, "effdet_image_encode_jpeg: out or len is NULL");
    *out = NULL;
    *len = 0;
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return set_error(err, EFFDET_ERR_ARG, "effdet_image_encode_jpeg: image is empty");
    if (img->width > JPEG_MAX_DIMENSION || img->height > JPEG_MAX_DIMENSION)
        return set_error(err, EFFDET_ERR_ARG,
                         "effdet_image_encode_jpeg: %dx%d exceeds JPEG's %d-pixel side limit", img->width,
                         img->height, (int)JPEG_MAX_DIMENSION);
    if (quality < 1 || quality > 100)
        return set_error(err, EFFDET_ERR_ARG, "effdet_image_encode_jpeg: quality %d is outside 1..100",
                         quality);

    jpeg_encoder e;
    memset(&e, 0, sizeof e);
    effdet_status st;
    e.cinfo.err = jpeg_guard_init(&e.guard);
    if (setjmp(e.guard.jump)) {
        st = set_error(err, EFFDET_ERR_INTERNAL, "JPEG encoder: %s", e.guard.msg);
        free(e.buf);
        goto fail;
    }
    jpeg_create_compress(&e.cinfo);
    jpeg_mem_dest(&e.cinfo, &e.buf, &e.size);
    e.cinfo.image_width = (JDIMENSION)img->width;
    e.cinfo.image_height = (JDIMENSION)img->height;
    e.cinfo.input_components = 3;
    e.cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&e.cinfo);
    jpeg_set_quality(&e.cinfo, quality, TRUE);
    /* Full-resolution chroma: 2-px coloured box edges and caption text would be smeared
     * into their neighbours by 4:2:0 subsampling. */
    for (int c = 0; c < 3; c++) e.cinfo.comp_info[c].h_samp_factor = e.cinfo.comp_info[c].v_samp_factor = 1;
    jpeg_start_compress(&e.cinfo, TRUE);
    size_t stride = (size_t)img->width * 3;
    while (e.cinfo.next_scanline < e.cinfo.image_height) {
        JSAMPROW row[1] = {img->rgb + e.cinfo.next_scanline * stride};
        jpeg_write_scanlines(&e.cinfo, row, 1);
    }
    jpeg_finish_compress(&e.cinfo);
    *out = e.buf;
    *len = (size_t)e.size;
    st = EFFDET_OK;
fail:
    jpeg_destroy_compress(&e.cinfo);
    return st;
}
