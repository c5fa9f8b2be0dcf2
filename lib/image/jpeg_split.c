/*
 * A JPEG decoded on several threads, entropy decoding included (docs/images.md, "Split
 * decode"). A file's Huffman data can only be parsed from its start, or from a restart
 * marker, so libjpeg decodes it on one thread: 12 of the 12.7 ms of a 4K frame's
 * 1/4-scaled decode here.
 *
 * Phase 1, entropy decoding in segments, one per thread.
 * - Without restart markers: the un-stuffed data is cut at equal byte offsets. The
 *   first segment starts where the data starts; every other one starts speculatively
 *   at its cut, with DC predictors of 0, as if an MCU began there. Huffman codes
 *   resynchronise: after a few hundred bits a decode started at a wrong bit usually
 *   lands on the true MCU boundaries. Each segment publishes the bit position of every
 *   MCU boundary it reaches. When segment j, which continues past its own end, stands
 *   at an MCU boundary at the same bit as one that segment j + 1 published, the two
 *   parse identically from there on (the parse of an MCU depends only on where it
 *   starts): segment j stops, and j + 1's data is right from that boundary on, with
 *   its DC values off by the difference of the two predictors. A speculative run that
 *   meets a bad code restarts one bit later; a restart inside the part that is used
 *   means the data is corrupt.
 * - With restart markers (DRI): each segment takes whole restart intervals, each from
 *   its own first byte with predictors of 0, as libjpeg does after a marker. Nothing is
 *   speculative; the markers must come in order and each interval must use exactly its
 *   bytes.
 *
 * Phase 2, pixels. With the segments chained (absolute MCU numbers, DC offsets), the
 * IDCT and colour conversion run on the pool by MCU rows (jpeg_idct.c).
 *
 * Only files where that is libjpeg's own result, byte for byte: baseline or extended
 * sequential Huffman, 8-bit, one interleaved scan, YCbCr or greyscale, and no
 * component upsampled vertically or by more than 2 (4:4:4, 4:2:2 and grey at any
 * scale, 4:2:0 only at a DCT scale, where libjpeg widens the chroma IDCT instead;
 * restart-marked files outside that, such as 4:1:1, are banded by jpeg_bands.c). 4:2:2 chroma is upsampled along its rows as libjpeg does it. The
 * headers are read and checked by libjpeg
 * itself (jpeg_start_decompress validates the tables exactly as the sequential decode
 * would). As in jpeg_bands.c, nothing here reports an error: any doubt returns a
 * failure and the caller decodes the file sequentially, which is where errors are
 * worded.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "image/jpeg_decode.h"
#include "image/jpeg_entropy.h"
#include "image/jpeg_idct.h"

#define MAX_SEGMENTS 4
#define MAX_COMPS 3

/* ------------------------------------------------------------------ the plan */

typedef struct {
    int w, h, out_w, out_h;
    int ncomp;
    int hs[MAX_COMPS], vs[MAX_COMPS]; /* sampling factors; 1 for a greyscale scan */
    idct_plan idct[MAX_COMPS];        /* with the component's IDCT size and quantiser */
    int mcus_per_row, mcu_rows;
    int px_w, px_h;       /* pixels of one MCU (component 0's samples; h2 ones have half as many columns) */
    int h2[MAX_COMPS];    /* upsampled horizontally by 2 (4:2:2 chroma) */
    int ds_w[MAX_COMPS];  /* samples per row before that (libjpeg's downsampled_width) */
    int fancy[MAX_COMPS]; /* by libjpeg's fancy h2v1 upsampling, else by replication */
    huff_table dc[4], ac[4];
    mcu_layout layout;
    int blk_x[JPEG_MAX_BLOCKS_IN_MCU],
        blk_y[JPEG_MAX_BLOCKS_IN_MCU]; /* block's place in its component's MCU */
    /* Phase 2 takes IDCT_LANES MCUs at a time; component c's 2x2 or 4x4 blocks of block
     * row y there are hs[c] IDCT groups, the first row_group[c][y]; -1 for 1x1, 8x8. */
    int row_group[MAX_COMPS][4];
    int ngroups;
    /* ... so block bi of the chunk's MCU m goes to group group_of[m][bi] (-1: one by
     * one), lane lane_of[m][bi]: worked out once, not per block */
    int16_t group_of[IDCT_LANES][JPEG_MAX_BLOCKS_IN_MCU];
    uint8_t lane_of[IDCT_LANES][JPEG_MAX_BLOCKS_IN_MCU];
    size_t scan_data;                  /* first byte of the entropy-coded data */
    int restart_interval;              /* MCUs per restart interval (DRI); 0: none */
} split_plan;

/* The natural indices of the coefficients an IDCT of this size reads (jidctred.c
 * skips row and column 4 at 4x4, and 2, 4, 6 at 2x2; 1x1 uses the DC only). */
static uint64_t coefs_read(int size) {
    static const uint8_t used[4][8] = {{1, 0, 0, 0, 0, 0, 0, 0},
                                       {1, 1, 0, 1, 0, 1, 0, 1},
                                       {1, 1, 1, 1, 0, 1, 1, 1},
                                       {1, 1, 1, 1, 1, 1, 1, 1}};
    const uint8_t *u = used[size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : 3];
    uint64_t m = 0;
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 8; c++)
            if (u[r] && u[c]) m |= 1ull << (r * 8 + c);
    return m & ~1ull; /* the DC is always kept, separately */
}

/* Tables, quantisers and geometry from a decompressor after jpeg_start_decompress. */
static int plan_from_libjpeg(struct jpeg_decompress_struct *ci, split_plan *p) {
    p->out_w = (int)ci->output_width, p->out_h = (int)ci->output_height;
    p->ncomp = ci->num_components;
    if (p->ncomp < 1 || p->ncomp > MAX_COMPS) return 0;
    int size0 = ci->comp_info[0].DCT_scaled_size;
    for (int c = 0; c < p->ncomp; c++) {
        const jpeg_component_info *k = &ci->comp_info[c];
        int s = k->DCT_scaled_size;
        if (s != 1 && s != 2 && s != 4 && s != 8) return 0;
        /* Every component has as many sample rows per MCU as the output, and as many
         * columns, or (a 4:2:2 chroma) half as many, which libjpeg's h2v1 upsampling
         * doubles within the row. Vertical upsampling blends rows of neighbouring MCU
         * rows: not done here. */
        int out_w = ci->max_h_samp_factor * ci->min_DCT_scaled_size;
        if (k->v_samp_factor * s != ci->max_v_samp_factor * ci->min_DCT_scaled_size) return 0;
        p->h2[c] = k->h_samp_factor * s * 2 == out_w;
        if (k->h_samp_factor * s != out_w && !(p->h2[c] && c > 0)) return 0;
        p->ds_w[c] = (int)k->downsampled_width;
        /* jdsample.c: fancy only with fancy upsampling on, a DCT scale above 1/8 and more
         * than 2 samples; else each sample twice */
        p->fancy[c] = ci->do_fancy_upsampling && ci->min_DCT_scaled_size > 1 && p->ds_w[c] > 2;
        if (!k->quant_table || !idct_plan_init(&p->idct[c], s, k->quant_table->quantval)) return 0;
        p->hs[c] = p->ncomp == 1 ? 1 : k->h_samp_factor;
        p->vs[c] = p->ncomp == 1 ? 1 : k->v_samp_factor;
    }
    p->px_w = p->hs[0] * size0, p->px_h = p->vs[0] * size0;
    p->mcus_per_row = (int)ci->MCUs_per_row, p->mcu_rows = (int)ci->MCU_rows_in_scan;
    if (ci->blocks_in_MCU < 1 || ci->blocks_in_MCU > JPEG_MAX_BLOCKS_IN_MCU) return 0;
    for (int t = 0; t < 4; t++) {
        const JHUFF_TBL *d = ci->dc_huff_tbl_ptrs[t], *a = ci->ac_huff_tbl_ptrs[t];
        if (d && !huff_table_build(&p->dc[t], d->bits, d->huffval, 1)) return 0;
        if (a && !huff_table_build(&p->ac[t], a->bits, a->huffval, 0)) return 0;
    }
    mcu_layout *lo = &p->layout;
    lo->nblocks = 0;
    for (int i = 0; i < ci->comps_in_scan; i++) {
        const jpeg_component_info *k = ci->cur_comp_info[i];
        int c = k->component_index;
        if (c < 0 || c >= p->ncomp || k->dc_tbl_no < 0 || k->dc_tbl_no > 3 || k->ac_tbl_no < 0 ||
            k->ac_tbl_no > 3 || !ci->dc_huff_tbl_ptrs[k->dc_tbl_no] || !ci->ac_huff_tbl_ptrs[k->ac_tbl_no])
            return 0;
        for (int n = 0; n < p->hs[c] * p->vs[c]; n++) {
            if (lo->nblocks >= JPEG_MAX_BLOCKS_IN_MCU) return 0;
            p->blk_x[lo->nblocks] = n % p->hs[c], p->blk_y[lo->nblocks] = n / p->hs[c];
            mcu_block *b = &lo->b[lo->nblocks++];
            b->comp = c;
            b->dc = &p->dc[k->dc_tbl_no];
            b->ac = &p->ac[k->ac_tbl_no];
            b->keep = coefs_read(p->idct[c].size);
        }
    }
    if (lo->nblocks != ci->blocks_in_MCU) return 0;
    p->ngroups = 0;
    for (int c = 0; c < p->ncomp; c++)
        for (int y = 0; y < 4; y++) {
            int grouped = (p->idct[c].size == 2 || p->idct[c].size == 4) && y < p->vs[c];
            p->row_group[c][y] = grouped ? p->ngroups : -1;
            if (grouped) p->ngroups += p->hs[c];
        }
    if (p->ngroups > JPEG_MAX_BLOCKS_IN_MCU) return 0; /* at most one group per block of the MCU */
    for (int m = 0; m < IDCT_LANES; m++)
        for (int bi = 0; bi < lo->nblocks; bi++) {
            int c = lo->b[bi].comp, g = p->row_group[c][p->blk_y[bi]], lane = m * p->hs[c] + p->blk_x[bi];
            p->group_of[m][bi] = (int16_t)(g < 0 ? -1 : g + lane / IDCT_LANES);
            p->lane_of[m][bi] = (uint8_t)(lane % IDCT_LANES);
        }
    return 1;
}

/* 1 when the file is one this decoder reproduces exactly (see the top of the file). */
static int plan_split(const uint8_t *data, size_t len, long long max_pixels, const effdet_decode_opts *opts,
                      split_plan *p) {
    struct jpeg_decompress_struct ci;
    jpeg_guard guard;
    volatile int ok = 0; /* read after a longjmp */
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_guard_init(&guard);
    if (setjmp(guard.jump)) goto done;
    if (!jpeg_probe_single_scan(&ci, data, len, max_pixels) || ci.data_precision != 8) goto done;
    if (ci.Ss != 0 || ci.Se != 63 || ci.Ah || ci.Al) goto done;
    p->w = (int)ci.image_width, p->h = (int)ci.image_height;
    if (!(ci.jpeg_color_space == JCS_YCbCr && ci.num_components == 3) &&
        !(ci.jpeg_color_space == JCS_GRAYSCALE && ci.num_components == 1))
        goto done;
    ci.out_color_space = JCS_RGB;
    jpeg_configure_output(&ci, opts);
    /* Sets up the decoder as the sequential decode does (and refuses what it refuses),
     * without reading any entropy-coded data: one scan, so nothing is buffered. */
    jpeg_start_decompress(&ci);
    if (!plan_from_libjpeg(&ci, p)) goto done;
    p->scan_data = (size_t)(ci.src->next_input_byte - data);
    p->restart_interval = (int)ci.restart_interval;
    ok = p->scan_data < len;
done:
    jpeg_destroy_decompress(&ci);
    return ok;
}

/* The entropy-coded data d[from..] with FF 00 turned back into FF, into u (room for
 * len - from bytes + JPEG_ENTROPY_PAD), followed by JPEG_ENTROPY_PAD zero bytes.
 * Returns its length, or -1 unless the data ends at EOI: libjpeg ends it at any FF
 * not followed by 00 (its two paths treat FF FF differently), so only FF D9 is
 * accepted there. With restart intervals (nint of them, nint > 0), the markers
 * between them are taken out, and must be RST0, RST1, ... in turn, exactly nint - 1
 * of them; starts[i] is where interval i begins in u (starts[0] = 0). */
static long long unstuff(const uint8_t *d, size_t len, size_t from, uint8_t *u, size_t *starts, long long nint) {
    size_t i = from, o = 0;
    long long markers = 0;
    if (!u) return -1;
    if (nint) starts[0] = 0;
    for (;;) {
        const uint8_t *ff = memchr(d + i, 0xFF, len - i);
        if (!ff) return -1;
        size_t k = (size_t)(ff - d);
        memcpy(u + o, d + i, k - i);
        o += k - i;
        if (k + 1 >= len) return -1;
        uint8_t code = d[k + 1];
        if (code == 0x00) {
            u[o++] = 0xFF;
        } else if (code == 0xD0 + markers % 8 && markers + 1 < nint) {
            starts[++markers] = o;
        } else {
            if (code != 0xD9 || markers + 1 != (nint ? nint : 1)) return -1;
            memset(u + o, 0, JPEG_ENTROPY_PAD);
            return (long long)o;
        }
        i = k + 2;
    }
}

/* Room for n elements of elem bytes in *p (contents not kept). */
static int ensure_room(void **p, size_t *cap, size_t n, size_t elem) {
    if (*cap >= n) return 1;
    free(*p);
    *p = malloc(n * elem);
    *cap = *p ? n : 0;
    return *p != NULL;
}

/* ------------------------------------------------------------------ phase 1 */

/* An MCU boundary a segment reached: the start of its next MCU. */
typedef struct {
    uint64_t pos;            /* bit offset in the un-stuffed data */
    int32_t pred[MAX_COMPS]; /* DC predictors there, relative to the run's start */
    uint32_t run;            /* the run of the segment that reached it */
    size_t off;              /* coefficient entries written before it */
} boundary;

typedef struct {
    _Alignas(64) uint64_t start; /* own cache lines: each thread updates its segment */
    boundary *b;
    int cap;
    atomic_int count; /* boundaries published */
    coef_entry *coef;
    size_t ncoef, coef_cap;
    int failed;
    int synced, my_at, next_at; /* boundary my_at equals the next segment's next_at */
} segment;

typedef struct {
    const split_plan *plan;
    const uint8_t *bits;
    uint64_t nbits;
    long long total_mcus;
    const size_t *starts; /* with restart intervals: each one's first byte; else NULL */
    long long nint;       /* restart intervals */
    int nseg;
    segment seg[MAX_SEGMENTS];
} entropy_job;

/* Buffers kept between decodes (a context's), so that a frame does not page-fault
 * its way through megabytes of fresh memory. */
struct jpeg_split_scratch {
    uint8_t *bits;
    size_t bits_cap;
    boundary *b[MAX_SEGMENTS];
    size_t b_cap[MAX_SEGMENTS];
    size_t *starts;
    size_t starts_cap;
    coef_entry *coef[MAX_SEGMENTS];
    size_t coef_cap[MAX_SEGMENTS];
};

jpeg_split_scratch *jpeg_split_scratch_create(void) {
    return calloc(1, sizeof(jpeg_split_scratch));
}

static void scratch_release(jpeg_split_scratch *s) {
    free(s->bits);
    free(s->starts);
    for (int j = 0; j < MAX_SEGMENTS; j++) {
        free(s->b[j]);
        free(s->coef[j]);
    }
}

void jpeg_split_scratch_free(jpeg_split_scratch *s) {
    if (!s) return;
    scratch_release(s);
    free(s);
}

static void publish(segment *s, uint64_t pos, const int32_t *pred, uint32_t run) {
    int n = atomic_load_explicit(&s->count, memory_order_relaxed);
    boundary *b = &s->b[n];
    b->pos = pos;
    memcpy(b->pred, pred, sizeof b->pred);
    b->run = run;
    b->off = s->ncoef;
    atomic_store_explicit(&s->count, n + 1, memory_order_release);
}

/* Does the next segment have a boundary at pos? *cursor walks its published list. */
static int meets_next(segment *next, uint64_t pos, int *cursor) {
    int n = atomic_load_explicit(&next->count, memory_order_acquire);
    while (*cursor < n && next->b[*cursor].pos < pos) (*cursor)++;
    return *cursor < n && next->b[*cursor].pos == pos;
}

static int reserve_coefs(segment *s) {
    if (s->coef_cap - s->ncoef >= MCU_MAX_ENTRIES) return 1;
    size_t cap = s->coef_cap * 2 + MCU_MAX_ENTRIES;
    coef_entry *c = realloc(s->coef, cap * sizeof *c);
    if (!c) return 0;
    s->coef = c, s->coef_cap = cap;
    return 1;
}

/* Decode segment j until it meets segment j + 1, or (the first segment) has every
 * MCU, or (any other) runs out of data. */
static void decode_segment(entropy_job *J, int j) {
    segment *s = &J->seg[j], *next = j + 1 < J->nseg ? &J->seg[j + 1] : NULL;
    const int truth = j == 0; /* the first segment starts at a real MCU boundary */
    /* a copy: next->start shares a cache line with the count the next thread bumps
     * every MCU, and reading it every MCU cost each thread ~10% */
    const uint64_t next_start = next ? next->start : UINT64_MAX;
    uint64_t pos = s->start;
    int32_t pred[MAX_COMPS] = {0};
    uint32_t run = 0;
    int cursor = 0;
    publish(s, pos, pred, run);
    for (;;) {
        int at = atomic_load_explicit(&s->count, memory_order_relaxed) - 1;
        if (truth && at == J->total_mcus) break;
        if (next && pos >= next_start && meets_next(next, pos, &cursor)) {
            s->synced = 1, s->my_at = at, s->next_at = cursor;
            break;
        }
        if (at + 1 >= s->cap || !reserve_coefs(s)) {
            s->failed = 1;
            break;
        }
        uint64_t p = pos; /* pred is only used again after a success (a restart zeroes it) */
        int n = decode_mcu(&J->plan->layout, J->bits, &p, pred, s->coef + s->ncoef);
        if (n && p <= J->nbits) {
            pos = p;
            s->ncoef += (size_t)n;
            publish(s, pos, pred, run);
            continue;
        }
        if (truth) { /* a bad code, or bits needed past the end: libjpeg's to report */
            s->failed = 1;
            break;
        }
        if (n || pos + 1 >= J->nbits) break; /* past the end: this run is over */
        /* A bad code: this run was not in step with the true MCUs. Try one bit on. */
        pos++, run++;
        memset(pred, 0, sizeof pred);
        publish(s, pos, pred, run);
    }
}

/* The restart intervals segment j of a file with restart markers covers. */
static void interval_range(const entropy_job *J, int j, long long *first, long long *end) {
    *first = J->nint * j / J->nseg;
    *end = J->nint * (j + 1) / J->nseg;
}

/* Segment j of a file with restart markers: whole intervals, each from its own first
 * byte with DC predictors 0, as the decoder after a marker. Nothing is speculative;
 * every interval must use its bytes up to the padding of its last one (< 8 bits),
 * which is where libjpeg meets the marker. The boundaries and entries are laid out as
 * decode_segment's (a run of 0), so phase 2 does not tell the two apart. */
static void decode_restart_segment(entropy_job *J, int j) {
    segment *s = &J->seg[j];
    const long long ri = J->plan->restart_interval;
    long long first, end;
    interval_range(J, j, &first, &end);
    int32_t pred[MAX_COMPS] = {0};
    publish(s, (uint64_t)J->starts[first] * 8, pred, 0);
    for (long long i = first; i < end; i++) {
        uint64_t pos = (uint64_t)J->starts[i] * 8;
        uint64_t stop = i + 1 < J->nint ? (uint64_t)J->starts[i + 1] * 8 : J->nbits;
        long long mcus = i + 1 < J->nint ? ri : J->total_mcus - ri * i;
        memset(pred, 0, sizeof pred);
        for (long long m = 0; m < mcus; m++) {
            int at = atomic_load_explicit(&s->count, memory_order_relaxed) - 1;
            int n;
            if (at + 1 >= s->cap || !reserve_coefs(s) ||
                !(n = decode_mcu(&J->plan->layout, J->bits, &pos, pred, s->coef + s->ncoef)) || pos > stop) {
                s->failed = 1;
                return;
            }
            s->ncoef += (size_t)n;
            publish(s, pos, pred, 0);
        }
        if (stop - pos >= 8) { /* more data than the interval's MCUs */
            s->failed = 1;
            return;
        }
    }
}

static void decode_segments(void *arg, int begin, int end) {
    entropy_job *J = arg;
    for (int j = begin; j < end; j++) {
        if (J->starts)
            decode_restart_segment(J, j);
        else
            decode_segment(J, j);
    }
}

/* The part of a segment the image uses: MCUs from first_mcu on (to the next span's)
 * start at its boundaries from `at` on; its DC values are off by -dc_offset. */
typedef struct {
    const segment *seg;
    long long first_mcu;
    int at;
    int64_t dc_offset[MAX_COMPS];
} span;

/* Restart segments are spans as they are: each must hold all of its intervals' MCUs. */
static int chain_restart_segments(const entropy_job *J, span *sp) {
    for (int j = 0; j < J->nseg; j++) {
        const segment *s = &J->seg[j];
        long long first, end;
        interval_range(J, j, &first, &end);
        long long mcus = (end < J->nint ? end * J->plan->restart_interval : J->total_mcus) -
                         first * J->plan->restart_interval;
        if (s->failed || atomic_load(&s->count) != mcus + 1) return 0;
        sp[j].seg = s, sp[j].first_mcu = first * J->plan->restart_interval, sp[j].at = 0;
        memset(sp[j].dc_offset, 0, sizeof sp[j].dc_offset);
    }
    return J->nseg;
}

/* Chain the segments from the first: each one's used part must lie in one run and
 * the whole must hold exactly total_mcus MCUs. Returns the number of spans, 0 if the
 * segments do not fit together. */
static int chain_segments(const entropy_job *J, span *sp) {
    if (J->starts) return chain_restart_segments(J, sp);
    long long mcu = 0;
    int at = 0;
    int64_t off[MAX_COMPS] = {0};
    for (int j = 0; j < J->nseg; j++) {
        const segment *s = &J->seg[j];
        if (s->failed) return 0;
        int n = atomic_load(&s->count);
        if (at < 0 || at >= n) return 0;
        long long count = s->synced ? s->my_at - at : J->total_mcus - mcu;
        int end = s->synced ? s->my_at : (int)((long long)at + count);
        if (count < 0 || mcu + count > J->total_mcus || (long long)at + count >= n) return 0;
        if (s->b[at].run != s->b[end].run) return 0;
        sp[j].seg = s, sp[j].first_mcu = mcu, sp[j].at = at;
        memcpy(sp[j].dc_offset, off, sizeof off);
        mcu += count;
        if (!s->synced) return mcu == J->total_mcus ? j + 1 : 0;
        const segment *nx = &J->seg[j + 1];
        for (int c = 0; c < MAX_COMPS; c++) off[c] += (int64_t)s->b[end].pred[c] - nx->b[s->next_at].pred[c];
        at = s->next_at;
    }
    return 0;
}

/* ------------------------------------------------------------------ phase 2 */

typedef struct {
    const split_plan *plan;
    const span *sp;
    int nspans;
    uint8_t *pixels;
    atomic_int bad;
} pixel_job;

/* The entries of MCU m. *si: the span of the previous call (MCUs come in order). */
static const coef_entry *mcu_entries(const pixel_job *P, long long m, int *si, const span **sp) {
    while (*si + 1 < P->nspans && m >= P->sp[*si + 1].first_mcu) (*si)++;
    *sp = &P->sp[*si];
    return (*sp)->seg->coef + (*sp)->seg->b[(*sp)->at + (m - (*sp)->first_mcu)].off;
}

/* The grouped blocks of MCUs mx0 .. mx0 + nm - 1 of a row -> samples at their places. */
static int store_groups(const split_plan *p, const idct_group *grp, int mx0, int nm, uint8_t **plane,
                        size_t stride) {
    for (int c = 0; c < p->ncomp && c < MAX_COMPS; c++)
        for (int y = 0; y < p->vs[c] && p->row_group[c][y] >= 0; y++)
            for (int gi = 0; gi < p->hs[c]; gi++) {
                int first = gi * IDCT_LANES, lanes = nm * p->hs[c] - first, sz = p->idct[c].size;
                if (lanes <= 0) break;
                uint8_t *dst =
                    plane[c] + (size_t)(y * sz) * stride + (size_t)(mx0 * p->hs[c] + first) * (size_t)sz;
                if (idct_group_store(&p->idct[c], &grp[p->row_group[c][y] + gi],
                                     lanes < IDCT_LANES ? lanes : IDCT_LANES, dst, stride))
                    return 0;
            }
    return 1;
}

/* The component planes of MCU row r: every block's samples at its place, IDCT_LANES
 * MCUs at a time (jpeg_idct.h: the 2x2 and 4x4 blocks go by groups). */
static int mcu_row_to_planes(const pixel_job *P, int r, idct_group *grp, uint8_t **plane, size_t stride) {
    const split_plan *p = P->plan;
    int si = 0;
    for (int mx0 = 0; mx0 < p->mcus_per_row; mx0 += IDCT_LANES) {
        int nm = p->mcus_per_row - mx0 < IDCT_LANES ? p->mcus_per_row - mx0 : IDCT_LANES;
        memset(grp, 0, (size_t)p->ngroups * sizeof *grp);
        for (int m = 0; m < nm; m++) {
            int mx = mx0 + m;
            const span *s;
            const coef_entry *e = mcu_entries(P, (long long)r * p->mcus_per_row + mx, &si, &s);
            for (int bi = 0; bi < p->layout.nblocks; bi++) {
                int c = p->layout.b[bi].comp, sz = p->idct[c].size, g = p->group_of[m][bi];
                int64_t dc = e[0] + s->dc_offset[c];
                int n;
                if (g >= 0) {
                    n = idct_group_add(&p->idct[c], dc, e, &grp[g], p->lane_of[m][bi]);
                } else {
                    uint8_t *dst = plane[c] + (size_t)(p->blk_y[bi] * sz) * stride +
                                   (size_t)(mx * p->hs[c] + p->blk_x[bi]) * (size_t)sz;
                    n = idct_block_entries(&p->idct[c], dc, e, dst, stride);
                }
                if (!n) return 0;
                e += n;
            }
        }
        if (!store_groups(p, grp, mx0, nm, plane, stride)) return 0;
    }
    return 1;
}

static void decode_pixel_rows(void *arg, int begin, int end) {
    pixel_job *P = arg;
    const split_plan *p = P->plan;
    size_t stride = (size_t)p->mcus_per_row * (size_t)p->px_w;
    /* every sample is written before it is read; zeroed so that no analyser has to see it.
     * MAX_COMPS more rows: the upsampled ones of h2 components */
    uint8_t *planes = calloc(stride * ((size_t)p->px_h * (size_t)p->ncomp + MAX_COMPS), 1);
    if (!planes) {
        atomic_store(&P->bad, 1);
        return;
    }
    idct_group grp[JPEG_MAX_BLOCKS_IN_MCU]; /* 9 KB */
    uint8_t *plane[MAX_COMPS];
    for (int c = 0; c < MAX_COMPS; c++)
        plane[c] = planes + (size_t)(c < p->ncomp ? c : 0) * stride * (size_t)p->px_h;
    uint8_t *wide = planes + stride * (size_t)p->px_h * (size_t)p->ncomp; /* MAX_COMPS rows */
    for (int r = begin; r < end && !atomic_load_explicit(&P->bad, memory_order_relaxed); r++) {
        if (!mcu_row_to_planes(P, r, grp, plane, stride)) {
            atomic_store(&P->bad, 1);
            break;
        }
        for (int y = 0; y < p->px_h; y++) {
            int oy = r * p->px_h + y;
            if (oy >= p->out_h) break;
            uint8_t *dst = P->pixels + (size_t)oy * (size_t)p->out_w * 3;
            const uint8_t *row[MAX_COMPS];
            for (int c = 0; c < MAX_COMPS; c++) {
                row[c] = plane[c] + (size_t)y * stride;
                if (c < p->ncomp && p->h2[c]) { /* libjpeg's upsampling, before colour conversion */
                    h2v1_row(row[c], p->ds_w[c], p->fancy[c], wide + (size_t)c * stride);
                    row[c] = wide + (size_t)c * stride;
                }
            }
            const uint8_t *Y = row[0];
            if (p->ncomp == 3) {
                ycc_to_rgb_row(Y, row[1], row[2], p->out_w, dst);
            } else {
                for (int x = 0; x < p->out_w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = Y[x];
            }
        }
    }
    free(planes);
}

/* ------------------------------------------------------------------ entry */

/* Phase 1 on the pool: segments with room from S; S keeps what they grew. */
static int decode_entropy(entropy_job *J, jpeg_split_scratch *S, size_t nbytes, threadpool *tp) {
    /* A speculative segment may publish a few thousand boundaries before it is in step */
    long long cap = J->total_mcus + 1 + 65536;
    if (cap > 0x7FFFFFFF) return 0;
    for (int j = 0; j < J->nseg; j++) {
        segment *s = &J->seg[j];
        /* about one entry per 4 bits of data in photos (grows if not) */
        size_t coefs = nbytes / (size_t)J->nseg * 2 + MCU_MAX_ENTRIES;
        if (!ensure_room((void **)&S->b[j], &S->b_cap[j], (size_t)cap, sizeof(boundary)) ||
            !ensure_room((void **)&S->coef[j], &S->coef_cap[j], coefs, sizeof(coef_entry)))
            return 0;
        s->start = (uint64_t)(nbytes * (size_t)j / (size_t)J->nseg) * 8;
        s->b = S->b[j], s->cap = (int)cap;
        s->coef = S->coef[j], s->coef_cap = S->coef_cap[j];
        atomic_init(&s->count, 0);
    }
    threadpool_run(tp, J->nseg, 1, decode_segments, J);
    for (int j = 0; j < J->nseg; j++) /* reallocated by the thread that grew it */
        S->coef[j] = J->seg[j].coef, S->coef_cap[j] = J->seg[j].coef_cap;
    return 1;
}

effdet_status jpeg_decode_split(const uint8_t *data, size_t len, long long max_pixels,
                                const effdet_decode_opts *opts, threadpool *tp, jpeg_split_scratch *scratch,
                                size_t min_scan_bytes, effdet_image *out) {
    int nseg = threadpool_size(tp) < MAX_SEGMENTS ? threadpool_size(tp) : MAX_SEGMENTS;
    if (nseg < 2) return EFFDET_ERR_ARG; /* nothing to gain on one thread */
    /* the entropy-coded data is shorter than the file: small files cost nothing here */
    if (len < min_scan_bytes) return EFFDET_ERR_ARG;
    if (check_jpeg_magic(data, len, NULL) != EFFDET_OK) return EFFDET_ERR_ARG; /* as the sequential decoder */
    jpeg_split_scratch local = {0}, *S = scratch ? scratch : &local;
    split_plan *plan = malloc(sizeof *plan);
    if (!plan) return EFFDET_ERR_NOMEM;
    effdet_status st = EFFDET_ERR_ARG;
    uint8_t *pixels = NULL;
    entropy_job J;
    memset(&J, 0, sizeof J);
    if (!plan_split(data, len, max_pixels, opts, plan) || len - plan->scan_data < min_scan_bytes) goto done;
    if (!ensure_room((void **)&S->bits, &S->bits_cap, len - plan->scan_data + JPEG_ENTROPY_PAD, 1)) {
        st = EFFDET_ERR_NOMEM;
        goto done;
    }
    J.total_mcus = (long long)plan->mcus_per_row * plan->mcu_rows;
    if (plan->restart_interval) {
        J.nint = (J.total_mcus + plan->restart_interval - 1) / plan->restart_interval;
        if (!ensure_room((void **)&S->starts, &S->starts_cap, (size_t)J.nint, sizeof(size_t))) {
            st = EFFDET_ERR_NOMEM;
            goto done;
        }
        J.starts = S->starts;
        if (J.nint < nseg) nseg = (int)J.nint;
    }
    long long nbytes = unstuff(data, len, plan->scan_data, S->bits, S->starts, J.nint);
    if (nbytes < 0) goto done;

    J.plan = plan, J.bits = S->bits, J.nbits = (uint64_t)nbytes * 8;
    J.nseg = nseg;
    if (!decode_entropy(&J, S, (size_t)nbytes, tp)) {
        st = EFFDET_ERR_NOMEM;
        goto done;
    }
    span sp[MAX_SEGMENTS];
    int nspans = chain_segments(&J, sp);
    if (!nspans) goto done;

    pixels = malloc((size_t)plan->out_w * (size_t)plan->out_h * 3);
    if (!pixels) {
        st = EFFDET_ERR_NOMEM;
        goto done;
    }
    pixel_job P = {.plan = plan, .sp = sp, .nspans = nspans, .pixels = pixels};
    atomic_init(&P.bad, 0);
    threadpool_run(tp, plan->mcu_rows, 4, decode_pixel_rows, &P);
    if (atomic_load(&P.bad)) goto done;
    out->rgb = pixels;
    out->width = plan->out_w;
    out->height = plan->out_h;
    out->source_width = plan->w;
    out->source_height = plan->h;
    pixels = NULL;
    st = EFFDET_OK;
done:
    if (!scratch) scratch_release(&local);
    free(pixels);
    free(plan);
    return st;
}
