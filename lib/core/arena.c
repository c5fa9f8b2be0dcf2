/*
 * The arena's memory plan (arena.h): record takes and drops in a planning pass, then
 * place the blocks greedily, one at a time, each where it overlaps no already-placed
 * block that is alive at the same time (arena_plan tries a few orders and fits and
 * keeps the smallest plan). Largest-first is TFLite's "greedy by size" rule: the big
 * tensors decide the peak, so they pick first and the small ones fill the gaps.
 */
#include <stdlib.h>

#include "core/arena.h"

static size_t round_up(size_t bytes) {
    return (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

void arena_begin_pass(arena *a) {
    a->next = 0;
    a->clock = 0;
    if (a->planning) a->nblocks = 0;
}

static int record_take(arena *a, size_t bytes) {
    if (a->nblocks == a->blocks_cap) {
        int cap = a->blocks_cap ? 2 * a->blocks_cap : 256;
        arena_block *b = realloc(a->blocks, (size_t)cap * sizeof *b);
        if (!b) {
            a->broken = 1;
            return -1;
        }
        a->blocks = b;
        a->blocks_cap = cap;
    }
    arena_block *b = &a->blocks[a->nblocks];
    b->bytes = bytes;
    b->offset = 0;
    b->born = a->clock++;
    b->dies = ARENA_FOREVER;
    return a->nblocks++;
}

float *arena_take(arena *a, size_t n, int *id) {
    size_t bytes = round_up(n * sizeof(float));
    if (a->planning) {
        *id = record_take(a, bytes);
        return NULL;
    }
    *id = -1;
    if (a->next >= a->nblocks || a->blocks[a->next].bytes != bytes) {
        a->broken = 1;
        return NULL;
    }
    const arena_block *b = &a->blocks[a->next];
    *id = a->next++;
    return a->base + b->offset / sizeof(float); /* offsets are multiples of ARENA_ALIGN */
}

void arena_drop(arena *a, int id) {
    if (a->planning && id >= 0 && id < a->nblocks) a->blocks[id].dies = a->clock++;
}

static int alive_together(const arena_block *x, const arena_block *y) {
    return x->born < y->dies && y->born < x->dies;
}

/* qsort without a context argument: sort (key, block) pairs instead of block ids. */
typedef struct {
    size_t key;
    int born, id;
} sort_item;

static int by_key_desc(const void *pa, const void *pb) {
    const sort_item *x = pa, *y = pb;
    if (x->key != y->key) return x->key < y->key ? 1 : -1;
    return x->born - y->born;
}

static int by_key_asc(const void *pa, const void *pb) {
    const sort_item *x = pa, *y = pb;
    return (x->key > y->key) - (x->key < y->key);
}

/* Where block i goes among the placed blocks alive with it: the lowest offset that fits
 * (first fit), or the start of the tightest gap that fits (best fit; the top of the
 * arena counts as an endless gap). */
static size_t place(const arena *a, int i, const sort_item *placed, int nplaced, sort_item *conflicts,
                    int best_fit) {
    int n = 0;
    for (int j = 0; j < nplaced; j++) {
        const arena_block *c = &a->blocks[placed[j].id];
        if (alive_together(&a->blocks[i], c)) conflicts[n++] = (sort_item){c->offset, 0, placed[j].id};
    }
    qsort(conflicts, (size_t)n, sizeof *conflicts, by_key_asc);
    size_t at = 0, bytes = a->blocks[i].bytes, best = (size_t)-1, best_gap = (size_t)-1;
    for (int j = 0; j < n; j++) {
        const arena_block *c = &a->blocks[conflicts[j].id];
        if (at + bytes <= c->offset) {
            if (!best_fit) return at;
            if (c->offset - at < best_gap) best_gap = c->offset - at, best = at;
        }
        if (c->offset + c->bytes > at) at = c->offset + c->bytes;
    }
    return best != (size_t)-1 ? best : at;
}

/* One placement of every block, in the given order; returns the arena size. */
static size_t place_all(arena *a, sort_item *order, sort_item *conflicts, int best_fit) {
    size_t size = 0;
    for (int k = 0; k < a->nblocks; k++) {
        arena_block *b = &a->blocks[order[k].id];
        b->offset = place(a, order[k].id, order, k, conflicts, best_fit);
        if (b->offset + b->bytes > size) size = b->offset + b->bytes;
    }
    return size;
}

static int by_born(const void *pa, const void *pb) {
    return ((const sort_item *)pa)->born - ((const sort_item *)pb)->born;
}

/* Bytes x lifetime, largest first (born carries the lifetime here: see arena_plan). */
static int by_area_desc(const void *pa, const void *pb) {
    const sort_item *x = pa, *y = pb;
    double ax = (double)x->key * x->born, ay = (double)y->key * y->born;
    return (ax < ay) - (ax > ay);
}

/* Six placements: blocks largest first (the big tensors decide the peak, so they pick
 * first; TFLite's rule), in the order the pass takes them (as a plain allocator would
 * see them), or by size x lifetime, each by first fit and by best fit. The smallest plan is kept. None is
 * optimal (that problem is NP-hard) and each loses on some network: on D0 largest-first
 * strands the 4 MiB output of block 1 above two 8 MiB tensors. */
size_t arena_plan(arena *a) {
    if (a->broken) return 0;
    int n = a->nblocks;
    sort_item *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    sort_item *conflicts = malloc((size_t)(n ? n : 1) * sizeof *conflicts);
    size_t size = 0;
    if (!order || !conflicts) {
        a->broken = 1;
        goto done;
    }
    int best = -1;
    for (int pass = 0; pass < 7; pass++) {
        int strategy = pass < 6 ? pass : best; /* the last pass redoes the winner */
        for (int i = 0; i < n; i++) {
            const arena_block *b = &a->blocks[i];
            int life = (b->dies == ARENA_FOREVER ? a->clock : b->dies) - b->born;
            order[i] = (sort_item){b->bytes, strategy < 4 ? b->born : life, i};
        }
        int (*cmp)(const void *, const void *) = strategy < 2 ? by_key_desc : strategy < 4 ? by_born : by_area_desc;
        qsort(order, (size_t)n, sizeof *order, cmp);
        size_t got = place_all(a, order, conflicts, strategy & 1);
        if (pass < 6 && (best < 0 || got < size)) size = got, best = strategy;
    }
done:
    free(order);
    free(conflicts);
    return a->broken ? 0 : (size ? size : ARENA_ALIGN);
}

void arena_free_plan(arena *a) {
    free(a->blocks);
    a->blocks = NULL;
    a->nblocks = a->blocks_cap = 0;
}
