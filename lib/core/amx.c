/*
 * The AMX gate (amx.h). The CPU check, the permission and the self-test are facts
 * about the process, not about a context: the kernel grants tile state to the whole
 * process and keeps it, so they run once (pthread_once) and every later context reads
 * the verdict. EFFDET_AMX is read on every call, so a test can switch it.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/amx.h"
#include "core/cpu.h"

#if defined(__linux__) && defined(__x86_64__)
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#endif

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static int amx_ok;
static char amx_why[200];

/* Ask Linux for the tile data state (process-wide, kept until exit). */
static int request_tile_state(char *why, size_t n) {
#if defined(__linux__) && defined(__x86_64__)
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0) return 1;
    snprintf(why, n, "the kernel refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM: %s)",
             strerror(errno));
#else
    snprintf(why, n, "AMX needs Linux on x86-64");
#endif
    return 0;
}

/* CPUID leaf 0x1D subleaf 1 describes palette 1; the kernel needs 8 tiles of 16 rows x
 * 64 bytes. A hypervisor that lists AMX without it would fault in the self-test. */
static int palette1_fits(char *why, size_t n) {
    unsigned tiles, rows, bytes_per_row;
    if (!cpu_amx_palette1(&tiles, &rows, &bytes_per_row)) {
        snprintf(why, n, "CPUID does not describe AMX palette 1");
        return 0;
    }
    if (bytes_per_row >= 64 && tiles >= 8 && rows >= 16) return 1;
    snprintf(why, n, "AMX palette 1 is %u tiles of %u rows x %u bytes (the kernel needs 8 x 16 x 64)", tiles,
             rows, bytes_per_row);
    return 0;
}

/* A deterministic value in [-1, 1) for element i of operand `salt`. */
static float test_value(size_t i, unsigned salt) {
    unsigned h = (unsigned)i * 2654435761u ^ salt * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return (float)(h % 2048u) / 1024.0f - 1.0f;
}

/* 40 rows x 72 channels -> 40 columns: a short second row tile, a partial pair block, a
 * column remainder. Both kernels multiply the same bf16 operands exactly and sum in
 * fp32, so they differ by reordered rounding only: at most ~2 * cin ulps of the sum of
 * |products|, which bounds each output. */
static int self_test(const kernel_table *k, char *why, size_t n) {
    enum { ROWS = 40, CIN = 72, COUT = 40 };
    int ok = 0;
    float *in = malloc(sizeof(float) * ROWS * CIN), *w = malloc(sizeof(float) * CIN * COUT);
    float *bias = malloc(sizeof(float) * COUT), *want = malloc(sizeof(float) * ROWS * COUT);
    float *got = malloc(sizeof(float) * ROWS * COUT), *mag = malloc(sizeof(float) * ROWS * COUT);
    uint16_t *wbf = malloc(bf16_packed_elems(CIN, COUT) * sizeof(uint16_t));
    if (!in || !w || !bias || !want || !got || !mag || !wbf) {
        snprintf(why, n, "AMX self-test: out of memory");
        goto done;
    }
    for (size_t i = 0; i < (size_t)ROWS * CIN; i++) in[i] = test_value(i, 1);
    for (size_t i = 0; i < (size_t)CIN * COUT; i++) w[i] = test_value(i, 2);
    for (size_t i = 0; i < COUT; i++) bias[i] = test_value(i, 3);
    k->fold_bf16(NULL, w, NULL, CIN, COUT, wbf);
    tensor tin = {in, ROWS, 1, CIN, 0}, twant = {want, ROWS, 1, COUT, 0}, tgot = {got, ROWS, 1, COUT, 0};
    k->pwconv_bf16(NULL, &tin, wbf, bias, ACT_NONE, &twant);
    k->pwconv_amx(NULL, &tin, wbf, bias, ACT_NONE, &tgot);
    /* the sums of |products| (of the unrounded operands: within 1% of the bf16 ones) */
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < COUT; j++) {
            float s = fabsf(bias[j]);
            for (int c = 0; c < CIN; c++) s += fabsf(in[r * CIN + c] * w[c * COUT + j]);
            mag[r * COUT + j] = s;
        }
    for (int i = 0; i < ROWS * COUT; i++) {
        float tol = 2.0f * CIN * 1.2e-7f * mag[i] * 1.01f;
        if (!(fabsf(got[i] - want[i]) <= tol)) {
            snprintf(why, n, "AMX self-test failed: output %d is %g, vdpbf16ps gives %g", i, got[i], want[i]);
            goto done;
        }
    }
    ok = 1;
done:
    free(in), free(w), free(bias), free(want), free(got), free(mag), free(wbf);
    return ok;
}

/* The avx512 level is the only one with the AMX kernel (amx_usable checks), so the
 * verdict for its table holds for every context that asks. */
static void decide_once(void) {
    const kernel_table *k = kernels_for_level(ISA_AVX512);
    cpu_features f;
    cpu_detect(&f);
    if (!f.amx_tile || !f.amx_bf16) {
        snprintf(amx_why, sizeof amx_why, "this CPU (%s) has no AMX-BF16", f.brand[0] ? f.brand : "unknown");
        return;
    }
    if (!f.os_amx) {
        snprintf(amx_why, sizeof amx_why, "the OS does not enable the AMX tile state (XCR0)");
        return;
    }
    /* the kernel's own rounding and epilogue, and the self-test's reference, are AVX-512 */
    if (!f.avx512_bf16 || !f.os_avx512 || !cpu_supports(&f, ISA_AVX512)) {
        snprintf(amx_why, sizeof amx_why, "this CPU has AMX but not the avx512 level with AVX512_BF16");
        return;
    }
    if (!palette1_fits(amx_why, sizeof amx_why)) return;
    if (!request_tile_state(amx_why, sizeof amx_why)) return;
    amx_ok = self_test(k, amx_why, sizeof amx_why);
}

int amx_usable(const kernel_table *k, const char **why) {
    static const char *off = "AMX switched off by EFFDET_AMX";
    const char *env = getenv("EFFDET_AMX");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "off") == 0)) {
        *why = off;
        return 0;
    }
    if (!k->pwconv_amx || !k->pwconv_bf16) {
        *why = "this kernel level has no AMX kernel (only avx512 has)";
        return 0;
    }
    pthread_once(&amx_once, decide_once);
    *why = amx_ok ? NULL : amx_why;
    return amx_ok;
}
