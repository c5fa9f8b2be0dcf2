/*
 * CPU feature detection and the choice of kernel level (cpu.h). Nothing is cached: a
 * context runs this once at creation (a few CPUID instructions), and the result is a
 * pointer to a const table.
 */
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/status.h"
#include "effdet_debug.h"

#if defined(__x86_64__)
#include <cpuid.h>

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) r[0] = r[1] = r[2] = r[3] = 0;
}

/* XCR0, the state components the OS saves; only valid when CPUID says OSXSAVE. The
 * instruction is written out so this file needs no -mxsave. */
static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

void cpu_detect(cpu_features *f) {
    memset(f, 0, sizeof *f);
    unsigned r[4];
    cpuid(0, 0, r);
    unsigned max_leaf = r[0];
    memcpy(f->vendor, &r[1], 4);
    memcpy(f->vendor + 4, &r[3], 4);
    memcpy(f->vendor + 8, &r[2], 4);
    cpuid(1, 0, r);
    unsigned c1 = r[2];
    f->sse3 = c1 >> 0 & 1, f->ssse3 = c1 >> 9 & 1, f->fma = c1 >> 12 & 1, f->cx16 = c1 >> 13 & 1;
    f->sse4_1 = c1 >> 19 & 1, f->sse4_2 = c1 >> 20 & 1, f->movbe = c1 >> 22 & 1, f->popcnt = c1 >> 23 & 1;
    f->osxsave = c1 >> 27 & 1, f->avx = c1 >> 28 & 1, f->f16c = c1 >> 29 & 1;
    if (max_leaf >= 7) {
        cpuid(7, 0, r);
        unsigned b7 = r[1], d7 = r[3];
        f->amx_bf16 = d7 >> 22 & 1, f->amx_tile = d7 >> 24 & 1;
        f->bmi1 = b7 >> 3 & 1, f->avx2 = b7 >> 5 & 1, f->bmi2 = b7 >> 8 & 1;
        f->avx512f = b7 >> 16 & 1, f->avx512dq = b7 >> 17 & 1, f->avx512cd = b7 >> 28 & 1;
        f->avx512bw = b7 >> 30 & 1, f->avx512vl = b7 >> 31 & 1;
        cpuid(7, 1, r); /* subleaf 1: EAX bit 5 = AVX512_BF16 */
        f->avx512_bf16 = r[0] >> 5 & 1;
    }
    cpuid(0x80000000u, 0, r);
    unsigned max_ext = r[0];
    if (max_ext >= 0x80000001u) {
        cpuid(0x80000001u, 0, r);
        f->lahf_lm = r[2] & 1, f->lzcnt = r[2] >> 5 & 1;
    }
    if (max_ext >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) {
            cpuid(0x80000002u + i, 0, r);
            memcpy(f->brand + 16 * i, r, 16);
        }
        /* the brand string is padded with leading and trailing spaces */
        size_t n = strlen(f->brand), s = 0;
        while (n > 0 && f->brand[n - 1] == ' ') f->brand[--n] = 0;
        while (f->brand[s] == ' ') s++;
        memmove(f->brand, f->brand + s, n - s + 1);
    }
    if (f->osxsave) {
        unsigned long long xcr0 = xgetbv0();
        f->os_avx = (xcr0 & 0x6) == 0x6;        /* XMM and YMM state */
        f->os_avx512 = (xcr0 & 0xe6) == 0xe6;   /* + opmask, ZMM0-15 upper halves, ZMM16-31 */
        f->os_amx = (xcr0 & 0x60000) == 0x60000; /* XTILECFG and XTILEDATA */
    }
}

int cpu_amx_palette1(unsigned *tiles, unsigned *rows, unsigned *bytes_per_row) {
    unsigned r[4];
    cpuid(0, 0, r);
    if (r[0] < 0x1d) return 0;
    cpuid(0x1d, 1, r); /* EBX: bytes per row (15:0), tile names (31:16); ECX: rows (15:0) */
    *bytes_per_row = r[1] & 0xffff, *tiles = r[1] >> 16, *rows = r[2] & 0xffff;
    return 1;
}

int cpu_supports(const cpu_features *f, isa_level l) {
    int v2 = f->sse3 && f->ssse3 && f->sse4_1 && f->sse4_2 && f->popcnt && f->cx16 && f->lahf_lm;
    int v3 = v2 && f->avx && f->avx2 && f->fma && f->f16c && f->bmi1 && f->bmi2 && f->lzcnt && f->movbe &&
             f->os_avx;
    int v4 = v3 && f->avx512f && f->avx512bw && f->avx512cd && f->avx512dq && f->avx512vl && f->os_avx512;
    switch (l) {
    case ISA_BASELINE: return v2;
    case ISA_AVX2: return v3;
    case ISA_AVX512: return v4;
    case ISA_COUNT: break;
    }
    return 0;
}

const kernel_table *kernels_for_level(isa_level l) {
    switch (l) {
    case ISA_BASELINE: return &kernels_baseline;
    case ISA_AVX2: return &kernels_avx2;
    case ISA_AVX512: return &kernels_avx512;
    case ISA_COUNT: break;
    }
    return NULL;
}
#else
/* Other architectures: one portable build of the kernels. */
void cpu_detect(cpu_features *f) {
    memset(f, 0, sizeof *f);
}
int cpu_amx_palette1(unsigned *tiles, unsigned *rows, unsigned *bytes_per_row) {
    (void)tiles, (void)rows, (void)bytes_per_row;
    return 0;
}
int cpu_supports(const cpu_features *f, isa_level l) {
    (void)f;
    return l == ISA_BASELINE;
}
const kernel_table *kernels_for_level(isa_level l) {
    return l == ISA_BASELINE ? &kernels_baseline : NULL;
}
#endif

static const char *const level_names[ISA_COUNT] = {"baseline", "avx2", "avx512"};

const char *isa_name(isa_level l) {
    return l >= 0 && l < ISA_COUNT ? level_names[l] : "unknown";
}

isa_level cpu_best_level(const cpu_features *f) {
    isa_level best = ISA_BASELINE;
    for (int l = ISA_BASELINE; l < ISA_COUNT; l++)
        if (cpu_supports(f, (isa_level)l)) best = (isa_level)l;
    return best;
}

effdet_status cpu_select_level(const cpu_features *f, const char *request, isa_level *out, effdet_error *err) {
    if (!request || !*request) {
        /* The baseline build's floor is x86-64-v2; a CPU below it still gets the
         * baseline kernels (the rest of the binary needs the same, so it got this far). */
        *out = cpu_best_level(f);
        return EFFDET_OK;
    }
    for (int l = 0; l < ISA_COUNT; l++) {
        if (strcmp(request, level_names[l]) != 0) continue;
        if (!kernels_for_level((isa_level)l) || (l != ISA_BASELINE && !cpu_supports(f, (isa_level)l)))
            return set_error(err, EFFDET_ERR_ARG, "EFFDET_ISA=%s: this CPU (%s) cannot run the %s kernels (best: %s)",
                             request, f->brand[0] ? f->brand : "unknown", request, isa_name(cpu_best_level(f)));
        *out = (isa_level)l;
        return EFFDET_OK;
    }
    return set_error(err, EFFDET_ERR_ARG, "EFFDET_ISA=%s: unknown level (baseline, avx2 or avx512)", request);
}

effdet_status cpu_check_bf16(const cpu_features *f, isa_level l, effdet_error *err) {
    const char *cpu = f->brand[0] ? f->brand : "unknown";
    if (!f->avx512_bf16 || !f->os_avx512)
        return set_error(err, EFFDET_ERR_UNSUPPORTED, "precision bf16: this CPU (%s) lacks AVX512_BF16", cpu);
    const kernel_table *k = kernels_for_level(l);
    if (!k || !k->pwconv_bf16)
        return set_error(
            err, EFFDET_ERR_UNSUPPORTED,
            "precision bf16: needs AVX512_BF16, which kernel level %s does not use (only avx512 does; "
            "EFFDET_ISA selects the level)",
            isa_name(l));
    return EFFDET_OK;
}

effdet_status kernels_select(const kernel_table **out, effdet_error *err) {
    cpu_features f;
    cpu_detect(&f);
    isa_level l;
    effdet_status st = cpu_select_level(&f, getenv("EFFDET_ISA"), &l, err);
    if (st) return st;
    *out = kernels_for_level(l);
    return EFFDET_OK;
}

effdet_status effdet_cpu_describe(const char *request, effdet_cpu_report *r, effdet_error *err) {
    cpu_features f;
    cpu_detect(&f);
    memset(r, 0, sizeof *r);
    memcpy(r->vendor, f.vendor, sizeof r->vendor);
    memcpy(r->brand, f.brand, sizeof r->brand);
#define CPU_FEATURE_REPORT(feat)                                                                             \
    if (r->num_features < EFFDET_CPU_MAX_FEATURES) {                                                         \
        r->features[r->num_features].name = #feat;                                                           \
        r->features[r->num_features++].present = f.feat;                                                    \
    }
    CPU_FEATURES(CPU_FEATURE_REPORT)
#undef CPU_FEATURE_REPORT
    for (int l = 0; l < ISA_COUNT && r->num_levels < EFFDET_CPU_MAX_LEVELS; l++)
        if (cpu_supports(&f, (isa_level)l) && kernels_for_level((isa_level)l))
            r->levels[r->num_levels++] = level_names[l];
    isa_level sel;
    effdet_status st = cpu_select_level(&f, request, &sel, err);
    if (st == EFFDET_OK) r->selected = level_names[sel];
    return st;
}
