/*
 * top-k over all (anchor, class) logits (docs/engine.md, "Post-processing") without
 * sorting them all.
 *
 * One pass over the logits keeps a buffer of up to 2K candidates that beat the current
 * threshold. When the buffer fills, a quickselect cuts it back to the K best and the
 * threshold rises to the K-th best value, so after the first few thousand values almost
 * every logit costs one compare. Candidates are unique 64-bit keys (value, then lower
 * flat index), which makes the result independent of the buffer schedule.
 *
 * With a thread pool the anchors are split into parts, one per thread, each with its own
 * buffer (scratch holds TOPK_MAX_PARTS of them), and the parts' survivors are merged.
 * On large grids the threshold starts at a value guessed from a sample, checked after the
 * scan (guess_threshold).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#include "post/rank.h"
#include "post/topk.h"

static void swap_keys(uint64_t *a, uint64_t *b) {
    uint64_t t = *a;
    *a = *b;
    *b = t;
}

/* Reorder keys[0..n) so that the k largest come first (in no particular order). Keys are
 * unique. Median-of-three quickselect; the pivot ends at its final place. */
static void select_largest(uint64_t *keys, int n, int k) {
    int lo = 0, hi = n - 1;
    while (hi > lo) {
        int mid = lo + (hi - lo) / 2;
        /* order keys[lo] >= keys[mid] >= keys[hi], then use the median as pivot */
        if (keys[mid] > keys[lo]) swap_keys(&keys[mid], &keys[lo]);
        if (keys[hi] > keys[lo]) swap_keys(&keys[hi], &keys[lo]);
        if (keys[hi] > keys[mid]) swap_keys(&keys[hi], &keys[mid]);
        uint64_t pivot = keys[mid];
        swap_keys(&keys[mid], &keys[hi]);
        /* Branch-free Lomuto partition: keys[lo, store) > pivot >= keys[store, i). The
         * compare's outcome is a coin flip on these keys, so a branch on it mispredicts
         * half the time; here it only moves `store` (measured on D0: the 16 shrinks of a
         * top-5000 took 1.4 ms with the branch, most of the top-k). */
        int store = lo;
        for (int i = lo; i < hi; i++) {
            uint64_t v = keys[i];
            int bigger = v > pivot;
            keys[i] = keys[store];
            keys[store] = v;
            store += bigger;
        }
        swap_keys(&keys[store], &keys[hi]);
        if (store == k - 1 || store == k) return;
        if (store > k)
            hi = store - 1;
        else
            lo = store + 1;
    }
}

typedef struct {
    uint64_t *buf;
    int n, cap, k;
    float threshold;   /* a logit must be > this to enter (NaN always enters) */
    long long entered; /* candidates that entered, shrunk away or not */
} candidate_buffer;

/* Keep only the k best candidates and raise the entry threshold to the k-th best value:
 * a later logit equal to it has a higher flat index, so it ranks below all k. */
static void shrink_to_k(candidate_buffer *cb) {
    select_largest(cb->buf, cb->n, cb->k);
    cb->n = cb->k;
    uint64_t kth = cb->buf[0];
    for (int i = 1; i < cb->k; i++)
        if (cb->buf[i] < kth) kth = cb->buf[i];
    uint32_t key = (uint32_t)(kth >> 32);
    if (key == UINT32_MAX) { /* the k-th best is NaN: only NaN can still enter */
        cb->threshold = INFINITY;
        return;
    }
    uint32_t bits = (key & 0x80000000u) ? key & 0x7fffffffu : ~key;
    memcpy(&cb->threshold, &bits, sizeof bits);
}

static void offer(candidate_buffer *cb, float v, uint32_t flat) {
    if (cb->n == cb->cap) shrink_to_k(cb);
    /* re-check: shrinking may have raised the threshold above v */
    if (!(v <= cb->threshold)) {
        cb->buf[cb->n++] = rank_key(v, flat);
        cb->entered++;
    }
}

/* Bit j of the result is set when x[j] passes the threshold (!(x <= t): NaN passes,
 * and everything passes while the threshold is still NaN), for 64 values. */
static uint64_t passing_mask64(const float *x, float t) {
    uint64_t m = 0;
#ifdef __AVX2__
    const __m256 vt = _mm256_set1_ps(t);
    for (int j = 0; j < 8; j++) {
        __m256 v = _mm256_loadu_ps(x + 8 * j);
        m |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, vt, _CMP_NLE_UQ)) << (8 * j);
    }
#elif defined(__SSE2__)
    /* The portable build (x86-64-v2): cmpnleps is the same unordered "not <=". Most
     * blocks hold nothing above the threshold once it has risen: one OR of the 16
     * compares rules those out before any mask is assembled. */
    const __m128 vt = _mm_set1_ps(t);
    __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int j = 0; j < 16; j += 4) {
        a0 = _mm_or_ps(a0, _mm_cmpnle_ps(_mm_loadu_ps(x + 4 * j), vt));
        a1 = _mm_or_ps(a1, _mm_cmpnle_ps(_mm_loadu_ps(x + 4 * j + 4), vt));
        a2 = _mm_or_ps(a2, _mm_cmpnle_ps(_mm_loadu_ps(x + 4 * j + 8), vt));
        a3 = _mm_or_ps(a3, _mm_cmpnle_ps(_mm_loadu_ps(x + 4 * j + 12), vt));
    }
    if (!_mm_movemask_ps(_mm_or_ps(_mm_or_ps(a0, a1), _mm_or_ps(a2, a3)))) return 0;
    for (int j = 0; j < 16; j++) {
        __m128 v = _mm_loadu_ps(x + 4 * j);
        m |= (uint64_t)(uint32_t)_mm_movemask_ps(_mm_cmpnle_ps(v, vt)) << (4 * j);
    }
#else
    for (int j = 0; j < 64; j++) m |= (uint64_t)!(x[j] <= t) << j;
#endif
    return m;
}

/* Scan n logits whose flat indices start at base. Most 64-value blocks hold nothing
 * above the threshold and cost 8 vector compares; in the others only the passing
 * values are visited (a quarter of D0's blocks hold a candidate, each only a few). */
static void scan_all_classes(candidate_buffer *cb, const float *x, size_t n, uint32_t base) {
    enum { BLOCK = 64 };
    size_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        uint64_t m = passing_mask64(x + i, cb->threshold);
        while (m) {
            int j = __builtin_ctzll(m);
            m &= m - 1;
            /* offer() re-checks: an earlier offer may have raised the threshold */
            if (!(x[i + j] <= cb->threshold)) offer(cb, x[i + j], base + (uint32_t)(i + j));
        }
    }
    for (; i < n; i++)
        if (!(x[i] <= cb->threshold)) offer(cb, x[i], base + (uint32_t)i);
}

static void scan_masked(candidate_buffer *cb, const float *x, size_t n, uint32_t base, int C,
                        const uint8_t *class_mask) {
    /* Excluded classes must not raise the threshold, so they are skipped before the
     * compare, not after. base is a multiple of C (a level starts at an anchor). */
    for (size_t i = 0; i < n; i += (size_t)C)
        for (int c = 0; c < C; c++)
            if (class_mask[c] && !(x[i + c] <= cb->threshold)) offer(cb, x[i + c], base + (uint32_t)(i + c));
}

/* One part of the logits: anchors [a0, a1) of the whole grid (every level they cover),
 * scanned into its own candidate buffer. */
typedef struct {
    const anchor_grid *g;
    const head_outputs *h;
    const uint8_t *class_mask;
    uint64_t *keys; /* part p's buffer: keys + p * 2k */
    int k, parts;
    float start;                       /* every part's first threshold (NaN: everything enters) */
    int count[TOPK_MAX_PARTS];         /* candidates each part ends with (<= k) */
    long long entered[TOPK_MAX_PARTS]; /* logits above `start` each part saw */
} topk_job;

static void scan_part(const topk_job *j, int p) {
    const anchor_grid *g = j->g;
    const int C = g->num_classes;
    long long a0 = (long long)g->total * p / j->parts, a1 = (long long)g->total * (p + 1) / j->parts;
    /* The threshold starts at j->start (NaN: every value passes, -inf included); it rises
     * at each shrink. */
    candidate_buffer cb = {
        .buf = j->keys + (size_t)p * 2 * j->k, .n = 0, .cap = 2 * j->k, .k = j->k, .threshold = j->start};
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        long long lo = g->level_offset[l];
        long long hi = lo + (long long)g->level_h[l] * g->level_w[l] * g->num_anchors;
        if (lo < a0) lo = a0;
        if (hi > a1) hi = a1;
        if (lo >= hi) continue;
        const float *x = j->h->cls[l] + (size_t)(lo - g->level_offset[l]) * C;
        size_t n = (size_t)(hi - lo) * C;
        uint32_t base = (uint32_t)lo * (uint32_t)C;
        if (j->class_mask)
            scan_masked(&cb, x, n, base, C, j->class_mask);
        else
            scan_all_classes(&cb, x, n, base);
    }
    if (cb.n > j->k) {
        select_largest(cb.buf, cb.n, j->k);
        cb.n = j->k;
    }
    ((topk_job *)j)->count[p] = cb.n; /* each part writes only its own slots */
    ((topk_job *)j)->entered[p] = cb.entered;
}

static void scan_parts(void *arg, int begin, int end) {
    for (int p = begin; p < end; p++) scan_part(arg, p);
}

/* Parts for a pool of `threads`: one per thread, but not for grids so small that the
 * fork-join costs more than the scan (the unit tests' 128x128 grids). */
static int parts_for(const anchor_grid *g, int threads) {
    long long logits = (long long)g->total * g->num_classes;
    int parts = threads < TOPK_MAX_PARTS ? threads : TOPK_MAX_PARTS;
    while (parts > 1 && logits / parts < 262144) parts--;
    return parts < 1 ? 1 : parts;
}

/* The logit at flat index i (level by level, channels-last). */
static const float *logit_at(const anchor_grid *g, const head_outputs *h, long long i) {
    const long long C = g->num_classes;
    int l = EFFDET_NUM_LEVELS - 1;
    while (l > 0 && i < g->level_offset[l] * C) l--;
    return h->cls[l] + (i - g->level_offset[l] * C);
}

/* A starting threshold for the scan, so that it does not begin by admitting (and
 * repeatedly cutting back) thousands of ordinary logits: the value ranked
 * 4 * k * M / total in a sample of M logits (32 runs of 512, spread over the grid), which
 * leaves about 4k logits above it. Only a guess: topk_select_mt checks that at least k
 * logits were above it, and otherwise scans again from NaN. NaN when there is no point. */
#define SAMPLE_RUNS 32
#define SAMPLE_RUN 512
static float guess_threshold(const anchor_grid *g, const head_outputs *h, long long total, int k,
                             uint64_t *keys) {
    const long long M = (long long)SAMPLE_RUNS * SAMPLE_RUN;
    if (total < 16 * M || (long long)TOPK_MAX_PARTS * 2 * k < M) return NAN; /* small grid, or no room */
    long long rank = (4 * (long long)k * M + total - 1) / total;
    if (rank < 16) rank = 16;
    if (rank > M / 4) return NAN; /* k is a large share of the logits: nothing to skip */
    int n = 0;
    for (int r = 0; r < SAMPLE_RUNS; r++) {
        long long begin = total * (2 * r + 1) / (2 * SAMPLE_RUNS) - SAMPLE_RUN / 2;
        for (long long i = begin; i < begin + SAMPLE_RUN; i++) /* a run may cross a level: per value */
            keys[n++] = rank_key(*logit_at(g, h, i), (uint32_t)i);
    }
    select_largest(keys, n, (int)rank);
    uint64_t kth = keys[0];
    for (int i = 1; i < rank; i++)
        if (keys[i] < kth) kth = keys[i];
    return *logit_at(g, h, rank_key_index(kth)); /* NaN when the sample is that NaN-rich */
}

int topk_select_mt(const anchor_grid *g, const head_outputs *h, int k, const uint8_t *class_mask,
                   topk_item *out, void *scratch, threadpool *tp) {
    const int C = g->num_classes;
    long long total = (long long)g->total * C;
    if (k <= 0 || total == 0) return 0;
    if (k > total) k = (int)total;

    /* Each part keeps its own k best (the global k best are among their union: a value
     * beaten by k others in its own part is beaten by k overall), then one selection over
     * the union. Keys are unique, so the k best and their order do not depend on how the
     * logits were split: the result is the same for every pool size. */
    topk_job j = {.g = g, .h = h, .class_mask = class_mask, .keys = scratch, .k = k, .start = NAN};
    j.parts = parts_for(g, threadpool_size(tp));
    /* Masked classes would skew the sample; they start from NaN. */
    if (!class_mask) j.start = guess_threshold(g, h, total, k, j.keys);
    threadpool_run(tp, j.parts, 1, scan_parts, &j);
    /* With k logits above the start, the k best are all above it and were all offered;
     * otherwise the guess was too high: scan again, admitting everything. */
    long long entered = 0;
    for (int p = 0; p < j.parts; p++) entered += j.entered[p];
    if (!isnan(j.start) && entered < k) {
        j.start = NAN;
        threadpool_run(tp, j.parts, 1, scan_parts, &j);
    }
    int n = 0;
    for (int p = 0; p < j.parts; p++) { /* pack the parts' survivors to the front */
        memmove(j.keys + n, j.keys + (size_t)p * 2 * k, sizeof *j.keys * (size_t)j.count[p]);
        n += j.count[p];
    }
    if (n > k) {
        select_largest(j.keys, n, k);
        n = k;
    }
    /* keys has at least 2k slots: the upper half is free for the radix sort's temporary. */
    sort_keys_desc(j.keys, n, j.keys + k);
    for (int i = 0; i < n; i++) {
        uint32_t flat = rank_key_index(j.keys[i]);
        out[i].anchor = (int32_t)(flat / (uint32_t)C);
        out[i].cls = (int32_t)(flat % (uint32_t)C);
        int l = EFFDET_NUM_LEVELS - 1;
        while (l > 0 && out[i].anchor < g->level_offset[l]) l--;
        const float *level_cls = h->cls[l] + (size_t)(flat - (uint32_t)g->level_offset[l] * (uint32_t)C);
        out[i].logit = *level_cls; /* the stored value itself (keeps -0 and NaN payloads) */
    }
    return n;
}

int topk_select(const anchor_grid *g, const head_outputs *h, int k, const uint8_t *class_mask, topk_item *out,
                void *scratch) {
    return topk_select_mt(g, h, k, class_mask, out, scratch, NULL);
}
