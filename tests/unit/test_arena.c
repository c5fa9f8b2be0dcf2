/* The arena's memory plan (lib/core/arena.c) and the forward pass's use of it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "effdet.h"
#include "effdet_debug.h"
#include "testutil.h"

/* A pseudo-random sequence of takes and drops: n blocks, each dropped after a random
 * number of later events, some never. */
static void plan_random(arena *a, int n, uint32_t seed) {
    int *id = malloc((size_t)n * sizeof *id), *left = malloc((size_t)n * sizeof *left);
    memset(a, 0, sizeof *a);
    a->planning = 1;
    arena_begin_pass(a);
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        size_t floats = 1 + (seed >> 8) % 100000;
        arena_take(a, floats, &id[i]);
        left[i] = (int)((seed >> 4) % 12) - 1; /* -1: lives to the end */
        for (int j = 0; j < i; j++)
            if (left[j] > 0 && --left[j] == 0) arena_drop(a, id[j]);
    }
    free(id);
    free(left);
    a->planning = 0;
}

static size_t most_alive_at_once(const arena *a) {
    size_t most = 0;
    for (int t = 0; t < a->clock; t++) {
        size_t live = 0;
        for (int i = 0; i < a->nblocks; i++)
            if (a->blocks[i].born <= t && t < a->blocks[i].dies) live += a->blocks[i].bytes;
        if (live > most) most = live;
    }
    return most;
}

START_TEST(test_plan_never_overlaps_live_blocks) {
    for (uint32_t seed = 1; seed <= 20; seed++) {
        arena a;
        plan_random(&a, 300, seed);
        size_t size = arena_plan(&a);
        ck_assert_uint_gt(size, 0);
        ck_assert_uint_ge(size, most_alive_at_once(&a));
        for (int i = 0; i < a.nblocks; i++) {
            const arena_block *x = &a.blocks[i];
            ck_assert_uint_eq(x->offset % ARENA_ALIGN, 0);
            ck_assert_uint_le(x->offset + x->bytes, size);
            for (int j = i + 1; j < a.nblocks; j++) {
                const arena_block *y = &a.blocks[j];
                int together = x->born < y->dies && y->born < x->dies;
                int overlap = x->offset < y->offset + y->bytes && y->offset < x->offset + x->bytes;
                ck_assert_msg(!(together && overlap), "seed %u: blocks %d and %d are alive together and overlap",
                              seed, i, j);
            }
        }
        arena_free_plan(&a);
    }
}
END_TEST

/* A real pass gets the planned places back, and one that departs from the plan is
 * caught instead of writing outside the arena. */
START_TEST(test_replay_and_departure) {
    arena a;
    memset(&a, 0, sizeof a);
    a.planning = 1;
    arena_begin_pass(&a);
    int x, y, z;
    arena_take(&a, 1000, &x);
    arena_take(&a, 1000, &y);
    arena_drop(&a, x);
    arena_take(&a, 500, &z); /* may reuse x's place */
    a.planning = 0;
    size_t size = arena_plan(&a);
    ck_assert_uint_eq(size, 2 * 4032); /* 1000 floats round up to 4032 bytes; z fits where x was */
    float *base = aligned_alloc(ARENA_ALIGN, size);
    a.base = base;
    a.cap = size;
    arena_begin_pass(&a);
    float *px = arena_take(&a, 1000, &x), *py = arena_take(&a, 1000, &y);
    arena_drop(&a, x);
    float *pz = arena_take(&a, 500, &z);
    ck_assert_ptr_eq(pz, px);
    ck_assert_ptr_ne(px, py);
    ck_assert(!a.broken);
    arena_begin_pass(&a);
    arena_take(&a, 1000, &x);
    ck_assert_ptr_null(arena_take(&a, 2000, &y)); /* a different size than planned */
    ck_assert(a.broken);
    free(base);
    arena_free_plan(&a);
}
END_TEST

/* The plan reuses memory as soon as a tensor is dead: the outputs must come out the
 * same as when every intermediate is kept (a liveness bug would overwrite a tensor
 * still to be read). Bit for bit, at 1 and 2 threads (the band split differs). */
static void check_plan_matches_kept(const char *model_path, const char *input_path) {
    effdet_model *m;
    effdet_error err;
    ck_assert_msg(effdet_model_load(model_path, &m, &err) == EFFDET_OK, "%s", err.msg);
    const effdet_info *info = effdet_model_info(m);
    size_t n = (size_t)info->input_h * info->input_w * 3, len = 0;
    float *input = input_path ? tu_read_file(input_path, &len) : NULL;
    if (!input) {
        uint32_t st = 7;
        input = malloc(n * sizeof *input);
        tu_fill_random(input, n, -2, 2, &st);
    } else {
        ck_assert_uint_eq(len, n * sizeof *input);
    }
    for (int threads = 1; threads <= 2; threads++) {
        effdet_context *plain, *kept;
        ck_assert_int_eq(effdet_context_create(m, threads, &plain, &err), EFFDET_OK);
        ck_assert_int_eq(effdet_context_create(m, threads, &kept, &err), EFFDET_OK);
        ck_assert_int_eq(effdet_context_keep_tensors(kept, &err), EFFDET_OK);
        ck_assert_uint_le(effdet_context_arena_bytes(plain), effdet_context_arena_bytes(kept));
        effdet_tensor t;
        ck_assert_int_eq(effdet_get_tensor(plain, EFFDET_T_FPN, 0, &t), EFFDET_ERR_ARG);
        for (int pass = 0; pass < 2; pass++) { /* the second pass starts from the first's leftovers */
            ck_assert_int_eq(effdet_forward(plain, input, &err), EFFDET_OK);
            ck_assert_int_eq(effdet_forward(kept, input, &err), EFFDET_OK);
            static const effdet_tensor_kind kinds[2] = {EFFDET_T_CLASS, EFFDET_T_BOX};
            for (int k = 0; k < 2; k++)
                for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
                    effdet_tensor a, b;
                    ck_assert_int_eq(effdet_get_tensor(plain, kinds[k], l, &a), EFFDET_OK);
                    ck_assert_int_eq(effdet_get_tensor(kept, kinds[k], l, &b), EFFDET_OK);
                    size_t cnt = (size_t)a.h * a.w * a.c;
                    ck_assert_msg(memcmp(a.data, b.data, cnt * sizeof(float)) == 0,
                                  "%s, %d thread(s): %s output P%d differs between the plain and the kept plan",
                                  info->name, threads, k ? "box" : "class", l + 3);
                }
        }
        printf("%s, %d thread(s): arena %zu bytes (keeping every tensor: %zu)\n", info->name, threads,
               effdet_context_arena_bytes(plain), effdet_context_arena_bytes(kept));
        effdet_context_free(plain);
        effdet_context_free(kept);
    }
    free(input);
    effdet_model_free(m);
}

START_TEST(test_tiny_plan_matches_kept) {
    check_plan_matches_kept(tu_fixture("weights.safetensors"), NULL); /* noise */
}
END_TEST

START_TEST(test_d0_plan_matches_kept) {
    const char *shared = tu_shared_dir();
    if (!shared) return;
    char model[1200], input[1200];
    snprintf(model, sizeof model, "%s/d0/weights.safetensors", shared);
    snprintf(input, sizeof input, "%s/d0/input.f32", shared);
    check_plan_matches_kept(model, input);
}
END_TEST

int main(void) {
    Suite *s = suite_create("arena");
    TCase *tc = tcase_create("arena");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_plan_never_overlaps_live_blocks);
    tcase_add_test(tc, test_replay_and_departure);
    tcase_add_test(tc, test_tiny_plan_matches_kept);
    tcase_add_test(tc, test_d0_plan_matches_kept);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
