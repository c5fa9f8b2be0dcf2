/*
 * Internal: the context's arena, placed by a memory plan.
 *
 * The forward pass takes every buffer it needs from the arena (arena_take) and says
 * when it is done with it (arena_drop). The sequence of takes and drops is the same on
 * every pass of a model (sizes depend only on the architecture, the thread count and
 * which tensors the caller keeps), so it is recorded once, by a planning pass that runs
 * no kernels, and each buffer is then given a fixed offset such that no two buffers
 * alive at the same time overlap (arena_plan: greedy placement in a few orders, TFLite's
 * "greedy by size" among them). Buffers never dropped live to the end of the pass: the network's outputs.
 * A real pass replays the plan: the i-th take returns base + offset[i], so a request
 * allocates nothing and the memory is the peak of what is alive at once, not the sum.
 */
#ifndef EFFDET_ARENA_H
#define EFFDET_ARENA_H

#include <stddef.h>

#define ARENA_ALIGN 64

typedef struct {
    size_t bytes, offset;
    int born, dies; /* pass clock at take / drop (ARENA_FOREVER: never dropped) */
} arena_block;

#define ARENA_FOREVER 0x7fffffff

typedef struct {
    float *base; /* ARENA_ALIGN-aligned; NULL while planning */
    size_t cap;  /* bytes at base */
    int planning;
    arena_block *blocks; /* the plan: one entry per take, in pass order */
    int nblocks, blocks_cap;
    int next;  /* real pass: the next take's entry */
    int clock; /* planning: counts takes and drops */
    int broken; /* planning ran out of memory, or a pass took what the plan does not say (a bug) */
} arena;

/* Start a pass (planning or real): takes are numbered from 0 again. */
void arena_begin_pass(arena *a);

/* n floats, ARENA_ALIGN-aligned. Returns the buffer (NULL while planning, or when the
 * pass departs from the plan: `broken` is then set) and its block id for arena_drop. */
float *arena_take(arena *a, size_t n, int *id);

/* The block is dead from here on: its memory may be reused by later takes. */
void arena_drop(arena *a, int id);

/* After a planning pass: give every block its offset. Returns the arena's size in
 * bytes, or 0 with `broken` set. */
size_t arena_plan(arena *a);

/* Free the plan (not base). */
void arena_free_plan(arena *a);

#endif
