/*
 * Internal: sortable keys for floats and the descending key sort (rank.c), shared by
 * top-k (topk.c) and soft-NMS's final ordering (postprocess.c). Exposed so tests can
 * check the ordering rules directly.
 */
#ifndef EFFDET_RANK_H
#define EFFDET_RANK_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* A uint32 that orders like the float: larger float -> larger key. -0 and +0 are the
 * same value (torch compares floats, so they tie), and every NaN is above +inf, as
 * torch.topk treats NaN as the largest value. */
static inline uint32_t float_order_key(float v) {
    uint32_t bits;
    if (isnan(v)) return UINT32_MAX;
    if (v == 0) v = 0; /* -0 -> +0 */
    memcpy(&bits, &v, sizeof bits);
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

/* A unique 64-bit key: larger value first, then lower index first (what a stable
 * descending sort gives). */
static inline uint64_t rank_key(float v, uint32_t index) {
    return ((uint64_t)float_order_key(v) << 32) | (uint32_t)~index;
}
static inline uint32_t rank_key_index(uint64_t key) {
    return ~(uint32_t)key;
}

/* Sort keys descending (LSD radix sort; tmp holds n keys). Allocates nothing. */
void sort_keys_desc(uint64_t *keys, int n, uint64_t *tmp);

#endif
