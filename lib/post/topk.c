/*
 * top-k over all (anchor, class) logits (docs/engine.md, "Post-processing") without
 * sorting them all.
 *
 * One pass over the logits keeps a buffer of up to 2K candidates that beat the current
 * threshold. When the buffer fills, a quickselect cuts it back to the K best and the
 * threshold rises to the K-th best value, so after the first few thousand values almost
 * every logit costs one compare. Candidates are unique 64-bit keys (value, then lower
 * flat index), which makes the result independent of the buffer schedule.
 */
#include <stddef.h>
#include <stdint.h>
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
        int store = lo;
        for (int i = lo; i < hi; i++)
            if (keys[i] > pivot) swap_keys(&keys[i], &keys[store++]);
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
    float threshold; /* a logit must be > this to enter (NaN always enters) */
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
    if (!(v <= cb->threshold)) cb->buf[cb->n++] = rank_key(v, flat);
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
    /* The portable build (x86-64-v2): cmpnleps is the same unordered "not <=". */
    const __m128 vt = _mm_set1_ps(t);
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

int topk_select(const anchor_grid *g, const head_outputs *h, int k, const uint8_t *class_mask, topk_item *out,
                void *scratch) {
    const int C = g->num_classes;
    long long total = (long long)g->total * C;
    if (k <= 0 || total == 0) return 0;
    if (k > total) k = (int)total;

    /* The threshold starts as NaN, which every value passes (-inf included); it becomes
     * a real value at the first shrink. */
    candidate_buffer cb = {.buf = scratch, .n = 0, .cap = 2 * k, .k = k, .threshold = NAN};
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        size_t n = (size_t)g->level_h[l] * g->level_w[l] * g->num_anchors * C;
        uint32_t base = (uint32_t)g->level_offset[l] * (uint32_t)C;
        if (class_mask)
            scan_masked(&cb, h->cls[l], n, base, C, class_mask);
        else
            scan_all_classes(&cb, h->cls[l], n, base);
    }
    if (cb.n > k) {
        select_largest(cb.buf, cb.n, k);
        cb.n = k;
    }
    /* buf has 2k slots: the upper half is free for the radix sort's temporary. */
    sort_keys_desc(cb.buf, cb.n, cb.buf + k);
    for (int i = 0; i < cb.n; i++) {
        uint32_t flat = rank_key_index(cb.buf[i]);
        out[i].anchor = (int32_t)(flat / (uint32_t)C);
        out[i].cls = (int32_t)(flat % (uint32_t)C);
        int l = EFFDET_NUM_LEVELS - 1;
        while (l > 0 && out[i].anchor < g->level_offset[l]) l--;
        const float *level_cls = h->cls[l] + (size_t)(flat - (uint32_t)g->level_offset[l] * (uint32_t)C);
        out[i].logit = *level_cls; /* the stored value itself (keeps -0 and NaN payloads) */
    }
    return cb.n;
}
