/*
 * Internal to op_pwconv_amx.c: the AMX tile operations it uses, either as the
 * instructions (immintrin.h) or, with EFFDET_AMX_EMULATE, carried out in C as Intel's
 * instruction reference defines them (LDTILECFG, TILELOADD, TILESTORED, TILEZERO,
 * TILERELEASE, TDPBF16PS).
 *
 * Why an emulation: no CPU with AMX was available to write this on. Built with it,
 * the kernel's tiling, strides, padding and tails run on any AVX-512 CPU (the avx512
 * kernel test links that copy) against the same reference as the other 1x1 kernels,
 * and the emulation checks what the hardware would fault on or silently get wrong: a
 * tile used before a configuration, operands of TDPBF16PS whose shapes disagree, a
 * configuration outside palette 1's limits. On a CPU with AMX the library's copy
 * runs the real instructions; model load first compares it with the AVX512_BF16
 * kernel (core/amx.c) and keeps it only if they agree.
 *
 * Tile numbers must be literals at every call: GCC pastes them into the instruction.
 */
#ifndef EFFDET_AMX_H
#define EFFDET_AMX_H

#include <stdint.h>
#include <string.h>

/* Palette 1: 8 tiles of up to 16 rows x 64 bytes. */
#define AMX_TILES 8
#define AMX_MAX_ROWS 16
#define AMX_MAX_COLSB 64

/* LDTILECFG's 64-byte operand. */
typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16]; /* bytes per row of tile i */
    uint8_t rows[16];
} amx_tilecfg;
_Static_assert(sizeof(amx_tilecfg) == 64, "LDTILECFG reads 64 bytes");

#ifdef EFFDET_AMX_EMULATE
#include <stdio.h>
#include <stdlib.h>

/* The emulation's checks stay on in every build (NDEBUG included): each one is a fault
 * or a wrong result on the hardware. */
#define AMX_EMU_CHECK(cond)                                                                                  \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: emulated AMX: %s\n", __FILE__, __LINE__, #cond);                         \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* The emulated tile registers. Thread-local because the real ones are per-thread CPU
 * state: each pool thread configures and releases its own, as on the hardware. */
typedef struct {
    amx_tilecfg cfg;
    int configured;
    uint8_t t[AMX_TILES][AMX_MAX_ROWS][AMX_MAX_COLSB];
} amx_emu_regs;
static _Thread_local amx_emu_regs amx_emu;

/* LDTILECFG: checks what the hardware raises #GP for (palette 1's limits, reserved bytes
 * and tiles 8-15 zero, a tile's rows and bytes both zero or both not) and zeroes the
 * tiles. */
static void amx_emu_config(const amx_tilecfg *c) {
    AMX_EMU_CHECK(c->palette_id == 1 && c->start_row == 0);
    for (int i = 0; i < 14; i++) AMX_EMU_CHECK(c->reserved[i] == 0);
    for (int i = 0; i < 16; i++) {
        AMX_EMU_CHECK(i < AMX_TILES || (c->rows[i] == 0 && c->colsb[i] == 0));
        AMX_EMU_CHECK(c->rows[i] <= AMX_MAX_ROWS && c->colsb[i] <= AMX_MAX_COLSB);
        AMX_EMU_CHECK((c->rows[i] == 0) == (c->colsb[i] == 0));
    }
    amx_emu.cfg = *c;
    amx_emu.configured = 1;
    memset(amx_emu.t, 0, sizeof amx_emu.t);
}

static void amx_emu_release(void) {
    memset(&amx_emu, 0, sizeof amx_emu);
}

static void amx_emu_check(int t) {
    AMX_EMU_CHECK(amx_emu.configured && t >= 0 && t < AMX_TILES && amx_emu.cfg.rows[t] > 0);
}

static void amx_emu_zero(int t) {
    amx_emu_check(t);
    memset(amx_emu.t[t], 0, sizeof amx_emu.t[t]);
}

/* TILELOADD: rows[t] rows of colsb[t] bytes, row r from base + r * stride; the rest of
 * the tile is zeroed. */
static void amx_emu_load(int t, const void *base, long stride) {
    amx_emu_check(t);
    memset(amx_emu.t[t], 0, sizeof amx_emu.t[t]);
    for (int r = 0; r < amx_emu.cfg.rows[t]; r++)
        memcpy(amx_emu.t[t][r], (const uint8_t *)base + (long)r * stride, amx_emu.cfg.colsb[t]);
}

static void amx_emu_store(int t, void *base, long stride) {
    amx_emu_check(t);
    for (int r = 0; r < amx_emu.cfg.rows[t]; r++)
        memcpy((uint8_t *)base + (long)r * stride, amx_emu.t[t][r], amx_emu.cfg.colsb[t]);
}

static float amx_emu_bf16(const uint8_t *p) {
    uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The instruction's denormal handling: inputs as zero (DAZ), results flushed (FTZ). */
static float amx_emu_flush(float x) {
    return x > -1.17549435e-38f && x < 1.17549435e-38f ? 0.0f : x;
}

/* TDPBF16PS c += a . b: a is M rows x K pairs, b is K rows (one per pair) x N columns of
 * pairs, c is M x N fp32. Per the reference, for each k the even product is added, then
 * the odd one, each a single-rounded fp32 add (the bf16 products are exact in fp32).
 * The operands are widened to floats first (b transposed to [k][e][n]) so that the
 * loop over n vectorises: each c[m][n] still sums in the reference's order. */
static void amx_emu_dpbf16(int c, int a, int b) {
    amx_emu_check(c), amx_emu_check(a), amx_emu_check(b);
    AMX_EMU_CHECK(a != b && a != c && b != c); /* #UD */
    const amx_tilecfg *g = &amx_emu.cfg;
    int M = g->rows[c], K = g->colsb[a] / 4, N = g->colsb[c] / 4;
    AMX_EMU_CHECK(g->rows[a] == M && g->rows[b] == K && g->colsb[b] == g->colsb[c] && g->colsb[a] % 4 == 0);
    float av[AMX_MAX_ROWS][AMX_MAX_COLSB / 2], bv[AMX_MAX_ROWS][2][AMX_MAX_COLSB / 4];
    for (int m = 0; m < M; m++)
        for (int i = 0; i < 2 * K; i++) av[m][i] = amx_emu_flush(amx_emu_bf16(&amx_emu.t[a][m][2 * i]));
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++)
            for (int e = 0; e < 2; e++)
                bv[k][e][n] = amx_emu_flush(amx_emu_bf16(&amx_emu.t[b][k][4 * n + 2 * e]));
    for (int m = 0; m < M; m++) {
        float acc[AMX_MAX_COLSB / 4];
        memcpy(acc, amx_emu.t[c][m], sizeof(float) * N);
        for (int k = 0; k < K; k++)
            for (int e = 0; e < 2; e++) {
                float x = av[m][2 * k + e];
                for (int n = 0; n < N; n++) acc[n] = amx_emu_flush(acc[n] + x * bv[k][e][n]);
            }
        memcpy(amx_emu.t[c][m], acc, sizeof(float) * N);
    }
}

/* The kernel's own AVX-512 code (rounding rows, the epilogue) still needs AVX512_BF16. */
#define AMX_FN __attribute__((target("avx512bf16")))
#define amx_config(cfg) amx_emu_config(cfg)
#define amx_release() amx_emu_release()
#define amx_zero(t) amx_emu_zero(t)
#define amx_load(t, base, stride) amx_emu_load(t, base, stride)
#define amx_store(t, base, stride) amx_emu_store(t, base, stride)
#define amx_dpbf16(c, a, b) amx_emu_dpbf16(c, a, b)
#else
#include <immintrin.h>

/* The functions that run tile instructions (an attribute, as bf16_rows.h's
 * BF16_FN: clang's intrinsics need the target feature in the calling function). */
#define AMX_FN __attribute__((target("amx-tile,amx-bf16,avx512bf16")))
/* GCC's ldtilecfg asm declares only 8 bytes of its operand as read: pass a static const
 * configuration (in .rodata), never one built at run time, whose other stores the
 * compiler could then drop or sink. */
#define amx_config(cfg) _tile_loadconfig(cfg)
#define amx_release() _tile_release()
#define amx_zero(t) _tile_zero(t)
/* GCC's tileloadd asm does not declare that it reads memory: the barrier keeps every
 * store before it (the rows just rounded into the buffer) ahead of the load. */
#define amx_load(t, base, stride)                                                                            \
    do {                                                                                                     \
        __asm__ volatile("" ::: "memory");                                                                   \
        _tile_loadd(t, base, stride);                                                                        \
    } while (0)
#define amx_store(t, base, stride) _tile_stored(t, base, stride)
#define amx_dpbf16(c, a, b) _tile_dpbf16ps(c, a, b)
#endif

#endif
