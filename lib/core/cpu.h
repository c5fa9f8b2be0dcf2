/*
 * Internal: which kernels this CPU can run. CPUID says what the processor implements;
 * XGETBV says whether the OS saves the AVX / AVX-512 register state on a context switch
 * (without that, the instructions fault even though CPUID lists them). The three levels
 * follow the x86-64 psABI micro-architecture levels the kernels are compiled for:
 *   baseline = x86-64-v2 (SSE4.2, POPCNT), avx2 = x86-64-v3 (AVX2, FMA, BMI1/2, F16C,
 *   LZCNT, MOVBE), avx512 = x86-64-v4 (AVX512F/BW/CD/DQ/VL).
 * AVX512_BF16 is no level of its own: the bf16 precision mode needs it on top of avx512.
 * AMX-TILE + AMX-BF16 are none either: where the process may use them (core/amx.h), the
 * bf16 mode's 1x1 convs run on the tiles.
 */
#ifndef EFFDET_CPU_H
#define EFFDET_CPU_H

#include "effdet.h"
#include "ops/kernels.h"

typedef enum { ISA_BASELINE = 0, ISA_AVX2, ISA_AVX512, ISA_COUNT } isa_level;

/* Every CPUID / XCR0 bit the levels need, in one list (the struct below and
 * `effdet-detect --cpu` both come from it). os_avx / os_avx512: the OS saves the YMM /
 * opmask + ZMM state (XCR0), without which the instructions fault. */
#define CPU_FEATURES(X)                                                                                      \
    X(sse3)                                                                                                  \
    X(ssse3) X(sse4_1) X(sse4_2) X(popcnt) X(cx16) X(lahf_lm)           /* v2 */                             \
        X(avx) X(avx2) X(fma) X(f16c) X(bmi1) X(bmi2) X(lzcnt) X(movbe) /* v3 */                             \
        X(avx512f) X(avx512bw) X(avx512cd) X(avx512dq) X(avx512vl)      /* v4 */                             \
        X(osxsave) X(os_avx) X(os_avx512) X(avx512_bf16) /* bf16 precision (vdpbf16ps), on top of v4 */      \
        X(amx_tile) X(amx_bf16) X(os_amx) /* bf16 on AMX tiles (core/amx.h); os_amx: XCR0 tile state */

typedef struct {
    char vendor[13];
    char brand[49];
#define CPU_FEATURE_FIELD(name) int name;
    CPU_FEATURES(CPU_FEATURE_FIELD)
#undef CPU_FEATURE_FIELD
} cpu_features;

void cpu_detect(cpu_features *f);

/* AMX palette 1 as CPUID leaf 0x1D describes it: tile names, rows and bytes per row.
 * 0 (and nothing written) where the leaf is absent. */
int cpu_amx_palette1(unsigned *tiles, unsigned *rows, unsigned *bytes_per_row);

/* 1 when f has everything the level's kernels were compiled for. */
int cpu_supports(const cpu_features *f, isa_level l);

/* The best level f supports. */
isa_level cpu_best_level(const cpu_features *f);

const char *isa_name(isa_level l);

/* The level to run: `request` (the value of EFFDET_ISA; NULL or "" = the best f
 * supports). An unknown name, or a level f lacks, is an error naming EFFDET_ISA. */
effdet_status cpu_select_level(const cpu_features *f, const char *request, isa_level *out, effdet_error *err);

/* The kernels compiled for a level. */
const kernel_table *kernels_for_level(isa_level l);

/* EFFDET_OK when a context of this level on this CPU can run the bf16 1x1 kernels;
 * otherwise EFFDET_ERR_UNSUPPORTED and a message naming the missing feature. */
effdet_status cpu_check_bf16(const cpu_features *f, isa_level l, effdet_error *err);

/* cpu_detect + cpu_select_level(getenv("EFFDET_ISA")) + kernels_for_level. */
effdet_status kernels_select(const kernel_table **out, effdet_error *err);

#endif
