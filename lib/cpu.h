/*
 * Internal: which kernels this CPU can run. CPUID says what the processor implements;
 * XGETBV says whether the OS saves the AVX / AVX-512 register state on a context switch
 * (without that, the instructions fault even though CPUID lists them). The three levels
 * follow the x86-64 psABI micro-architecture levels the kernels are compiled for:
 *   baseline = x86-64-v2 (SSE4.2, POPCNT), avx2 = x86-64-v3 (AVX2, FMA, BMI1/2, F16C,
 *   LZCNT, MOVBE), avx512 = x86-64-v4 (AVX512F/BW/CD/DQ/VL).
 */
#ifndef EFFDET_CPU_H
#define EFFDET_CPU_H

#include "effdet.h"
#include "kernels.h"

typedef enum { ISA_BASELINE = 0, ISA_AVX2, ISA_AVX512, ISA_COUNT } isa_level;

typedef struct {
    char vendor[13];
    char brand[49];
    /* CPUID feature bits the levels need */
    int sse3, ssse3, sse41, sse42, popcnt, cx16, lahf;             /* v2 */
    int avx, avx2, fma, f16c, bmi1, bmi2, lzcnt, movbe;            /* v3 */
    int avx512f, avx512bw, avx512cd, avx512dq, avx512vl;           /* v4 */
    int osxsave;            /* the OS enabled XGETBV */
    int os_avx, os_avx512;  /* XCR0: YMM state / opmask + ZMM state saved by the OS */
} cpu_features;

void cpu_detect(cpu_features *f);

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

/* cpu_detect + cpu_select_level(getenv("EFFDET_ISA")) + kernels_for_level. */
effdet_status kernels_select(const kernel_table **out, effdet_error *err);

#endif
