/*
 * A JPEG decoded in horizontal bands on several threads, for the files where that gives
 * exactly the pixels of the one-pass decode (docs/images.md, "Banded decode"):
 *
 * - baseline or extended sequential Huffman, one interleaved scan (no progressive, no
 *   arithmetic coding), with a restart interval (DRI): at each restart marker the DC
 *   predictors reset and the bit stream starts on a byte, so the entropy-coded data from
 *   one marker on can be decoded without what came before it;
 * - no component upsampled vertically: 4:4:4, 4:2:2 and greyscale at any scale, and 4:2:0
 *   at a DCT scale (1/2, 1/4, 1/8), where libjpeg-turbo widens the chroma IDCT instead of
 *   upsampling. An output row then depends on its own MCU row's coefficients only
 *   (horizontal fancy upsampling stays within the row), so a band boundary on an MCU row
 *   changes nothing. Unscaled 4:2:0 is not banded: its fancy upsampling blends chroma
 *   rows across the boundary.
 *
 * Each band is fed to its own libjpeg decompressor as a complete JPEG: the file's
 * headers with the frame height patched to the band's, the entropy data of the band's
 * restart intervals, and an EOI. Bands start at an interval whose number is a multiple
 * of 8, so the first marker the band's decoder meets is the RST0 it expects.
 * The entropy decoding (most of a scaled decode: ~12 of 12.7 ms for a 4K 4:2:0 frame at
 * 1/4 here) is sequential within an interval, which is why files without restart
 * markers cannot be split and go through the sequential decoder.
 *
 * Nothing here reports an error: any doubt (a marker layout we do not parse, a warning,
 * an error in any band) returns a failure and the caller decodes the file sequentially,
 * which is the one place that words errors.
 */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>

#include "core/status.h"
#include "image/jpeg_decode.h"

#define MAX_BANDS 4

/* ------------------------------------------------------------ file layout */

typedef struct {
    size_t sof_height; /* offset of the frame header's 2-byte height */
    size_t scan_data;  /* first byte of the entropy-coded data (after SOS) */
} jpeg_layout;

static unsigned be16(const uint8_t *p) {
    return (unsigned)p[0] << 8 | p[1];
}

/* Walk the marker segments from SOI to the first SOS. Stricter than libjpeg (no junk
 * between segments): a file it refuses is simply decoded sequentially. */
static int find_layout(const uint8_t *d, size_t len, jpeg_layout *lo) {
    size_t i = 2, sof = 0;
    for (;;) {
        while (i + 1 < len && d[i] == 0xFF && d[i + 1] == 0xFF) i++; /* fill bytes */
        if (i + 4 > len || d[i] != 0xFF) return 0;
        unsigned m = d[i + 1];
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* standalone markers */
            i += 2;
            continue;
        }
        size_t seg = be16(d + i + 2);
        if (seg < 2 || i + 2 + seg > len) return 0;
        if (m == 0xC0 || m == 0xC1) {
            if (sof || seg < 8) return 0;
            sof = i + 5;
        } else if (m == 0xDA) {
            if (!sof) return 0;
            lo->sof_height = sof;
            lo->scan_data = i + 2 + seg;
            return 1;
        } else if ((m >= 0xC2 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) || m == 0xD8 ||
                   m == 0xD9) {
            return 0; /* another frame type, or SOI / EOI in the headers */
        }
        i += 2 + seg;
    }
}

/* ----------------------------------------------------------------- bands */

typedef struct {
    size_t data_begin, data_end; /* entropy data of the band: [begin, end) */
    int last;                    /* runs to the end of the file (its own EOI) */
    int src_rows;                /* band height in source pixels */
    int out_row0, out_rows;      /* rows of the decoded image it fills */
    int ok;
} band;

typedef struct {
    const uint8_t *data;
    size_t len;
    jpeg_layout lo;
    const effdet_decode_opts *opts;
    int out_w, nbands, denom;
    J_COLOR_SPACE out_space;
    uint8_t *pixels;
    band b[MAX_BANDS];
} band_job;

/* The source manager of one band: a list of byte ranges served in order, then EOI. */
typedef struct {
    struct jpeg_source_mgr pub;
    const uint8_t *ptr[5];
    size_t n[5];
    int count, next;
} band_source;

static const uint8_t EOI[2] = {0xFF, 0xD9};

static void src_init(j_decompress_ptr ci) {
    (void)ci;
}

static boolean src_fill(j_decompress_ptr ci) {
    band_source *s = (band_source *)ci->src;
    while (s->next < s->count && s->n[s->next] == 0) s->next++;
    if (s->next >= s->count) { /* past our EOI: libjpeg's own premature-EOF path (a warning: fatal) */
        WARNMS(ci, JWRN_JPEG_EOF);
        s->pub.next_input_byte = EOI;
        s->pub.bytes_in_buffer = 2;
        return TRUE;
    }
    s->pub.next_input_byte = s->ptr[s->next];
    s->pub.bytes_in_buffer = s->n[s->next];
    s->next++;
    return TRUE;
}

static void src_skip(j_decompress_ptr ci, long num) {
    band_source *s = (band_source *)ci->src;
    while (num > 0) {
        if (s->pub.bytes_in_buffer == 0) src_fill(ci);
        size_t k = (size_t)num < s->pub.bytes_in_buffer ? (size_t)num : s->pub.bytes_in_buffer;
        s->pub.next_input_byte += k;
        s->pub.bytes_in_buffer -= k;
        num -= (long)k;
    }
}

static void src_term(j_decompress_ptr ci) {
    (void)ci;
}

/* Decode band b into its rows of the image. Own decompressor, own guard: a libjpeg
 * error longjmps back to this frame on this thread. */
static void decode_band(band_job *j, int bi) {
    band *b = &j->b[bi];
    struct jpeg_decompress_struct ci;
    jpeg_guard guard;
    band_source src;
    uint8_t height[2] = {(uint8_t)(b->src_rows >> 8), (uint8_t)b->src_rows};
    memset(&ci, 0, sizeof ci);
    memset(&src, 0, sizeof src);
    src.pub.init_source = src_init;
    src.pub.fill_input_buffer = src_fill;
    src.pub.skip_input_data = src_skip;
    src.pub.resync_to_restart = jpeg_resync_to_restart;
    src.pub.term_source = src_term;
    /* headers up to the frame height, the patched height, the rest of the headers,
     * the band's entropy data, then EOI (the last band keeps the file's own) */
    src.ptr[0] = j->data, src.n[0] = j->lo.sof_height;
    src.ptr[1] = height, src.n[1] = 2;
    src.ptr[2] = j->data + j->lo.sof_height + 2, src.n[2] = j->lo.scan_data - j->lo.sof_height - 2;
    src.ptr[3] = j->data + b->data_begin, src.n[3] = b->data_end - b->data_begin;
    src.ptr[4] = EOI, src.n[4] = b->last ? 0 : 2;
    src.count = 5;
    b->ok = 0;
    ci.err = jpeg_guard_init(&guard);
    if (setjmp(guard.jump)) goto done;
    jpeg_create_decompress(&ci);
    ci.src = &src.pub;
    jpeg_read_header(&ci, TRUE);
    ci.out_color_space = j->out_space;
    jpeg_configure_output(&ci, j->opts);
    /* The band is shorter than the file: its scale is the file's, not one chosen for
     * the band's own height. */
    ci.scale_num = 1;
    ci.scale_denom = (unsigned)j->denom;
    jpeg_start_decompress(&ci);
    if ((int)ci.output_width != j->out_w || (int)ci.output_height != b->out_rows) goto done;
    size_t stride = (size_t)j->out_w * 3;
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW rows[1] = {j->pixels + (size_t)(b->out_row0 + (int)ci.output_scanline) * stride};
        if (jpeg_read_scanlines(&ci, rows, 1) != 1) goto done;
    }
    jpeg_finish_decompress(&ci);
    b->ok = 1;
done:
    jpeg_destroy_decompress(&ci);
}

static void decode_bands(void *arg, int begin, int end) {
    for (int b = begin; b < end; b++) decode_band(arg, b);
}

/* ------------------------------------------------------------ planning */

/* What the file's header says, read with a throwaway decompressor. */
typedef struct {
    int w, h, out_w, out_h, denom;
    int mcu_h, mcus_per_row, mcu_rows;
    unsigned restart_interval;
    J_COLOR_SPACE out_space;
} frame_info;

/* 1 when the file is one the bands reproduce exactly (see the top of the file). */
static int probe_frame(const uint8_t *data, size_t len, long long max_pixels, const effdet_decode_opts *opts,
                       frame_info *f) {
    struct jpeg_decompress_struct ci;
    jpeg_guard guard;
    volatile int ok = 0; /* read after a longjmp */
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_guard_init(&guard);
    if (setjmp(guard.jump)) goto done;
    if (!jpeg_probe_single_scan(&ci, data, len, max_pixels) || ci.restart_interval == 0) goto done;
    f->w = (int)ci.image_width, f->h = (int)ci.image_height;
    switch (ci.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB: f->out_space = JCS_RGB; break;
    default: goto done; /* CMYK / YCCK: converted per row by the sequential decoder */
    }
    ci.out_color_space = f->out_space;
    jpeg_configure_output(&ci, opts);
    jpeg_calc_output_dimensions(&ci);
    for (int c = 0; c < ci.num_components; c++) { /* no component upsampled vertically */
        const jpeg_component_info *k = &ci.comp_info[c];
        if (k->v_samp_factor * k->DCT_scaled_size != ci.max_v_samp_factor * ci.min_DCT_scaled_size) goto done;
    }
    f->denom = (int)ci.scale_denom;
    f->out_w = (int)ci.output_width, f->out_h = (int)ci.output_height;
    int mcu_w = ci.num_components == 1 ? DCTSIZE : ci.max_h_samp_factor * DCTSIZE;
    f->mcu_h = ci.num_components == 1 ? DCTSIZE : ci.max_v_samp_factor * DCTSIZE;
    f->mcus_per_row = (f->w + mcu_w - 1) / mcu_w;
    f->mcu_rows = (f->h + f->mcu_h - 1) / f->mcu_h;
    f->restart_interval = ci.restart_interval;
    ok = f->mcu_h % f->denom == 0;
done:
    jpeg_destroy_decompress(&ci);
    return ok;
}

/* A band may start at MCU row r when a restart interval starts there and its number is
 * a multiple of 8 (its decoder expects RST0 first). */
static long long start_interval(const frame_info *f, int r) {
    long long mcu = (long long)r * f->mcus_per_row;
    if (mcu % f->restart_interval) return -1;
    long long interval = mcu / f->restart_interval;
    return interval % 8 ? -1 : interval;
}

/* Band starts near equal splits of the MCU rows; fewer bands when no row qualifies
 * close enough. rows[0] = 0. Returns the number of bands. */
static int plan_rows(const frame_info *f, int want, int *rows, long long *interval) {
    int n = 1;
    rows[0] = 0, interval[0] = 0;
    for (int b = 1; b < want; b++) {
        int target = (int)((long long)f->mcu_rows * b / want), reach = f->mcu_rows / (2 * want);
        for (int d = 0; d <= reach; d++) {
            int cand[2] = {target + d, target - d};
            int found = 0;
            for (int c = 0; c < 2 && !found; c++) {
                int r = cand[c];
                if (r <= rows[n - 1] || r >= f->mcu_rows) continue;
                long long iv = start_interval(f, r);
                if (iv < 0) continue;
                rows[n] = r, interval[n] = iv, n++;
                found = 1;
            }
            if (found) break;
        }
    }
    return n;
}

/* Byte offsets of the restart markers that end the intervals before each band start:
 * marker k (0-based) ends interval k and must be RST(k mod 8). ends[b] = offset of the
 * marker ending interval[b] - 1, b >= 1. */
static int find_markers(const uint8_t *d, size_t len, size_t from, const long long *interval, int nbands,
                        size_t *marker_at) {
    long long k = 0;
    int b = 1;
    size_t i = from;
    while (b < nbands) {
        const uint8_t *p = memchr(d + i, 0xFF, len - i);
        if (!p) return 0;
        i = (size_t)(p - d);
        if (i + 1 >= len) return 0;
        unsigned m = d[i + 1];
        if (m == 0x00) { /* stuffed byte */
            i += 2;
            continue;
        }
        if (m == 0xFF) { /* fill byte before a marker */
            i += 1;
            continue;
        }
        if (m < 0xD0 || m > 0xD7 || (long long)(m - 0xD0) != k % 8)
            return 0; /* end of scan, or out of order */
        if (k == interval[b] - 1) marker_at[b++] = i;
        k++;
        i += 2;
    }
    return 1;
}

effdet_status jpeg_decode_bands(const uint8_t *data, size_t len, long long max_pixels,
                                const effdet_decode_opts *opts, threadpool *tp, effdet_image *out) {
    frame_info f;
    band_job j;
    memset(&j, 0, sizeof j);
    if (!probe_frame(data, len, max_pixels, opts, &f) || !find_layout(data, len, &j.lo))
        return EFFDET_ERR_ARG;
    int want = threadpool_size(tp) < MAX_BANDS ? threadpool_size(tp) : MAX_BANDS;
    int rows[MAX_BANDS];
    long long interval[MAX_BANDS];
    size_t marker_at[MAX_BANDS];
    int n = plan_rows(&f, want, rows, interval);
    if (n < 2 || !find_markers(data, len, j.lo.scan_data, interval, n, marker_at)) return EFFDET_ERR_ARG;

    j.data = data, j.len = len, j.opts = opts;
    j.out_w = f.out_w, j.denom = f.denom, j.out_space = f.out_space, j.nbands = n;
    for (int b = 0; b < n; b++) {
        band *bd = &j.b[b];
        bd->data_begin = b == 0 ? j.lo.scan_data : marker_at[b] + 2;
        bd->last = b == n - 1;
        bd->data_end = bd->last ? len : marker_at[b + 1];
        int r1 = bd->last ? f.mcu_rows : rows[b + 1];
        int y0 = rows[b] * f.mcu_h, y1 = bd->last ? f.h : r1 * f.mcu_h;
        bd->src_rows = y1 - y0;
        bd->out_row0 = y0 / f.denom;
        bd->out_rows = bd->last ? f.out_h - bd->out_row0 : bd->src_rows / f.denom;
    }
    j.pixels = malloc((size_t)f.out_w * (size_t)f.out_h * 3);
    if (!j.pixels) return EFFDET_ERR_NOMEM;
    threadpool_run(tp, n, 1, decode_bands, &j);
    for (int b = 0; b < n; b++)
        if (!j.b[b].ok) {
            free(j.pixels);
            return EFFDET_ERR_IMAGE;
        }
    out->rgb = j.pixels;
    out->width = f.out_w;
    out->height = f.out_h;
    out->source_width = f.w;
    out->source_height = f.h;
    return EFFDET_OK;
}
