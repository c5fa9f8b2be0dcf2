/*
 * Internal: a bump allocator over one buffer, with marks to release scratch. In
 * measure mode it hands out no memory and only records the high-water mark: the model
 * runs one "measure" forward pass at load time to learn how big each context's arena
 * must be, so a real forward pass never allocates.
 */
#ifndef EFFDET_ARENA_H
#define EFFDET_ARENA_H

#include <stddef.h>

#define ARENA_ALIGN 64

typedef struct {
    float *base; /* NULL in measure mode; ARENA_ALIGN-aligned */
    size_t cap, used, peak;
    int measure;
    int overflow; /* set if a real allocation did not fit (a sizing bug) */
} arena;

static inline float *arena_floats(arena *a, size_t n) {
    size_t bytes = (n * sizeof(float) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    size_t at = a->used;
    if (!a->measure && at + bytes > a->cap) {
        a->overflow = 1;
        return NULL;
    }
    a->used += bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->measure ? NULL : a->base + at / sizeof(float); /* at is a multiple of ARENA_ALIGN */
}

static inline size_t arena_mark(const arena *a) { return a->used; }
static inline void arena_release(arena *a, size_t mark) { a->used = mark; }

#endif
