/*
 * Micro-benchmark of the kernels on EfficientDet-D0 (512x512) shapes, with 1 and 2
 * threads. Not built by the Makefile; compile by hand, for one ISA level (the flags of
 * mk/kernels.mk: x86-64-v2 = baseline, x86-64-v3 = avx2, x86-64-v4 = avx512):
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v4 -DEFFDET_KERNEL_ISA=avx512 -fvect-cost-model=dynamic \
 *     -Ilib/include -Ilib bench/ops-bench.c lib/core/threadpool.c lib/ops/op_*.c \
 *     $(pkg-config --cflags --libs openblas) -lm -pthread -o build/ops-bench
 * Prints the median of several runs (the machine is shared: medians, not best runs).
 * With --pwconv-table ROWS it times the two 1x1 paths per shape instead (below;
 * bench/pwconv-table.sh builds it and runs that mode at each level).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef EFFDET_KERNEL_ISA
#define EFFDET_KERNEL_ISA baseline /* ops.h names one level's kernels; see above */
#endif
#include "ops/ops.h"

#define REPS 15

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* 64-byte aligned like the context arena: with malloc's 16-byte alignment every
 * 64-byte vector load of a 16-channel-multiple tensor straddles two cache lines, which
 * made dwconv measure up to 1.5x slower here than in the forward pass. */
static float *buffer(size_t n) {
    float *x = aligned_alloc(64, (n * sizeof *x + 63) / 64 * 64);
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    return x;
}

typedef enum { K_DW, K_DWSUM, K_PW, K_SEFOLD, K_ACT, K_CONV, K_POOL, K_UP, K_FUSE } kind;

typedef struct {
    kind k;
    const char *name;
    int h, w, c, k_or_cout, stride;
} bench_case;

static const bench_case cases[] = {
    {K_CONV, "conv2d stem 512x512x3->32 k3s2", 512, 512, 3, 32, 2},
    {K_DW, "dwconv 256x256x32 k3s1", 256, 256, 32, 3, 1},
    {K_DW, "dwconv 256x256x96 k3s2", 256, 256, 96, 3, 2},
    {K_DW, "dwconv 128x128x144 k3s1", 128, 128, 144, 3, 1},
    {K_DW, "dwconv 128x128x144 k5s2", 128, 128, 144, 5, 2},
    {K_DW, "dwconv 64x64x240 k5s1", 64, 64, 240, 5, 1},
    {K_DW, "dwconv 32x32x672 k5s1", 32, 32, 672, 5, 1},
    {K_DW, "dwconv 16x16x1152 k5s1", 16, 16, 1152, 5, 1},
    {K_DW, "dwconv 64x64x64 k3s1 (fpn/head)", 64, 64, 64, 3, 1},
    {K_DWSUM, "dwconv_sum 256x256x32 k3s1", 256, 256, 32, 3, 1},
    {K_DWSUM, "dwconv_sum 16x16x1152 k5s1", 16, 16, 1152, 5, 1},
    {K_PW, "pwconv 65536x16->96 swish", 256, 256, 16, 96, 0},
    {K_PW, "pwconv 16384x96->24", 128, 128, 96, 24, 0},
    {K_PW, "pwconv 16384x24->144 swish", 128, 128, 24, 144, 0},
    {K_PW, "pwconv 4096x240->40", 64, 64, 240, 40, 0},
    {K_PW, "pwconv 1024x480->80", 32, 32, 480, 80, 0},
    {K_PW, "pwconv 256x1152->192", 16, 16, 1152, 192, 0},
    {K_PW, "pwconv 4096x64->64 swish", 64, 64, 64, 64, 0},
    {K_PW, "pwconv 4096x64->810 (class)", 64, 64, 64, 810, 0},
    /* The same shapes by each path: "blas" = OpenBLAS sgemm, "direct" = our kernel. */
    {K_PW, "pwconv blas 65536x16->96 swish", 256, 256, 16, 96, 0},
    {K_PW, "pwconv direct 65536x16->96 swish", 256, 256, 16, 96, 0},
    {K_PW, "pwconv blas 16384x24->144 swish", 128, 128, 24, 144, 0},
    {K_PW, "pwconv direct 16384x24->144 swish", 128, 128, 24, 144, 0},
    {K_PW, "pwconv blas 16384x144->24", 128, 128, 144, 24, 0},
    {K_PW, "pwconv direct 16384x144->24", 128, 128, 144, 24, 0},
    {K_PW, "pwconv blas 4096x40->240 swish", 64, 64, 40, 240, 0},
    {K_PW, "pwconv direct 4096x40->240 swish", 64, 64, 40, 240, 0},
    {K_PW, "pwconv blas 4096x64->64 swish", 64, 64, 64, 64, 0},
    {K_PW, "pwconv direct 4096x64->64 swish", 64, 64, 64, 64, 0},
    {K_PW, "pwconv blas 256x1152->192", 16, 16, 1152, 192, 0},
    {K_PW, "pwconv direct 256x1152->192", 16, 16, 1152, 192, 0},
    /* The SE of run_block: gates from row sums + folding into the projection (c x cout). */
    {K_SEFOLD, "se gates+fold 128x128x96 ->24", 128, 128, 96, 24, 4},
    {K_SEFOLD, "se gates+fold 16x16x1152 ->320", 16, 16, 1152, 320, 48},
    {K_ACT, "swish 256x256x96", 256, 256, 96, 0, 0},
    {K_POOL, "maxpool 64x64x64", 64, 64, 64, 0, 0},
    {K_UP, "upsample 32x32x64->64x64", 32, 32, 64, 0, 0},
    {K_FUSE, "fuse3 64x64x64 swish", 64, 64, 64, 0, 0},
};

static void run_case(const bench_case *bc, threadpool *tp, float *a, float *b, float *c, float *w,
                     float *scratch, double *flops, double *elems) {
    tensor in = {a, bc->h, bc->w, bc->c, 0};
    switch (bc->k) {
    case K_DW: {
        int oh = (bc->h + bc->stride - 1) / bc->stride, ow = (bc->w + bc->stride - 1) / bc->stride;
        tensor out = {b, oh, ow, bc->c, 0};
        int pad = bc->stride == 1 ? (bc->k_or_cout - 1) / 2 : (bc->k_or_cout == 3 ? 0 : 1);
        op_dwconv(tp, &in, w, w + 10000, bc->k_or_cout, bc->stride, pad, pad, ACT_SWISH, &out);
        *elems = (double)oh * ow * bc->c;
        *flops = *elems * 2 * bc->k_or_cout * bc->k_or_cout;
        break;
    }
    case K_DWSUM: {
        int oh = (bc->h + bc->stride - 1) / bc->stride, ow = (bc->w + bc->stride - 1) / bc->stride;
        tensor out = {b, oh, ow, bc->c, 0};
        int pad = bc->stride == 1 ? (bc->k_or_cout - 1) / 2 : (bc->k_or_cout == 3 ? 0 : 1);
        op_dwconv_sum(tp, &in, w, w + 10000, bc->k_or_cout, bc->stride, pad, pad, ACT_SWISH, &out, c);
        *elems = (double)oh * ow * bc->c;
        *flops = *elems * 2 * bc->k_or_cout * bc->k_or_cout;
        break;
    }
    case K_SEFOLD: {
        /* rows of sums = h; gate in scratch, hidden after it; folded weights into c. */
        op_se_gates(tp, a, bc->h, bc->h * bc->w, bc->c, w, w + 100000, bc->stride, w + 200000, w + 300000,
                    scratch + bc->c, scratch);
        op_scale_rows(tp, w + 400000, scratch, bc->c, bc->k_or_cout, c);
        *elems = (double)bc->c * bc->k_or_cout;
        *flops = *elems;
        break;
    }
    case K_PW: {
        int rows = bc->h * bc->w;
        act_kind act = strstr(bc->name, "swish") ? ACT_SWISH : ACT_NONE;
        tensor pin = {a, rows, 1, bc->c, 0}, pout = {b, rows, 1, bc->k_or_cout, 0};
        if (strstr(bc->name, "direct"))
            op_pwconv_direct(tp, &pin, w, w + 1200000, act, &pout);
        else if (strstr(bc->name, "blas"))
            op_pwconv_blas(tp, &pin, w, w + 1200000, act, &pout);
        else
            op_pwconv(tp, &pin, w, w + 1200000, act, &pout);
        *elems = (double)rows * bc->k_or_cout;
        *flops = *elems * 2 * bc->c;
        break;
    }
    case K_CONV: {
        tensor out = {b, bc->h / 2, bc->w / 2, bc->k_or_cout, 0};
        op_conv2d(tp, &in, w, w + 10000, 3, 2, 0, 0, ACT_SWISH, &out);
        *elems = (double)tensor_numel(&out);
        *flops = *elems * 2 * 27;
        break;
    }
    case K_ACT:
        memcpy(b, a, tensor_numel(&in) * sizeof *a);
        op_activate(tp, b, tensor_numel(&in), ACT_SWISH);
        *elems = (double)tensor_numel(&in);
        *flops = 0;
        break;
    case K_POOL: {
        tensor out = {b, bc->h / 2, bc->w / 2, bc->c, 0};
        op_maxpool3s2(tp, &in, 0, 0, &out);
        *elems = (double)tensor_numel(&out);
        *flops = 0;
        break;
    }
    case K_UP: {
        tensor out = {b, bc->h * 2, bc->w * 2, bc->c, 0};
        op_upsample_nearest(tp, &in, &out);
        *elems = (double)tensor_numel(&out);
        *flops = 0;
        break;
    }
    case K_FUSE: {
        tensor x1 = {c, bc->h, bc->w, bc->c, 0}, x2 = {w, bc->h, bc->w, bc->c, 0}, out = {b, bc->h, bc->w, bc->c, 0};
        const tensor *ins[3] = {&in, &x1, &x2};
        const float fw[3] = {0.5f, 0.3f, 0.9f};
        op_fuse(tp, ins, 3, fw, ACT_SWISH, &out);
        *elems = (double)tensor_numel(&out);
        *flops = 0;
        break;
    }
    }
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/*
 * --pwconv-table ROWS: for every "cin cout" line on stdin, the median thread CPU time
 * (us) of op_pwconv_blas and of op_pwconv_direct on up to ROWS x cin -> cout + swish,
 * one thread, the two paths alternating within each repetition so that both see the
 * same load on a shared machine. Prints "cin cout rows blas_us direct_us", for
 * bench/pwconv-table.sh to turn into lib/ops/pwconv_table.h.
 */
static int pwconv_table(int rows) {
    enum { TREPS = 11 };
    size_t max_cin = 4096, max_cout = 4096;
    float *a = buffer((size_t)rows * max_cin), *b = buffer((size_t)rows * max_cout);
    float *w = buffer(max_cin * max_cout), *bias = buffer(max_cout);
    int cin, cout;
    while (scanf("%d %d", &cin, &cout) == 2) {
        if (cin < 1 || cout < 1 || (size_t)cin > max_cin || (size_t)cout > max_cout) {
            fprintf(stderr, "ops-bench: shape %d x %d outside 1..4096\n", cin, cout);
            return 1;
        }
        /* The big late shapes run at fewer rows (D7's deepest levels have 2304) so the
         * whole table takes minutes: ~2^27 multiply-adds per call, 256 rows at least. */
        long fit = (1L << 27) / ((long)cin * cout) / 64 * 64;
        int n = fit < 256 ? 256 : fit < rows ? (int)fit : rows;
        double tb[TREPS], td[TREPS];
        tensor tin = {a, n, 1, cin, 0}, tout = {b, n, 1, cout, 0};
        op_pwconv_blas(NULL, &tin, w, bias, ACT_SWISH, &tout); /* warm-up */
        op_pwconv_direct(NULL, &tin, w, bias, ACT_SWISH, &tout);
        for (int r = 0; r < TREPS; r++) {
            double t0 = cpu_s();
            op_pwconv_blas(NULL, &tin, w, bias, ACT_SWISH, &tout);
            double t1 = cpu_s();
            op_pwconv_direct(NULL, &tin, w, bias, ACT_SWISH, &tout);
            double t2 = cpu_s();
            tb[r] = t1 - t0;
            td[r] = t2 - t1;
        }
        qsort(tb, TREPS, sizeof tb[0], cmp_double);
        qsort(td, TREPS, sizeof td[0], cmp_double);
        printf("%d %d %d %.1f %.1f\n", cin, cout, n, tb[TREPS / 2] * 1e6, td[TREPS / 2] * 1e6);
        fflush(stdout);
    }
    free(a);
    free(b);
    free(w);
    free(bias);
    return 0;
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    if (argc == 3 && strcmp(argv[1], "--pwconv-table") == 0) return pwconv_table(atoi(argv[2]));
    const char *filter = argc > 1 ? argv[1] : NULL;
    size_t big = (size_t)512 * 512 * 96;
    float *a = buffer(big), *b = buffer(big), *c = buffer(big), *w = buffer(2000000), *scratch = buffer(4096);
    threadpool *tp2 = threadpool_create(2);
    printf("%-36s %10s %10s %8s %10s %8s\n", "op", "1T us", "2T us", "2T/1T", "1T GF/s", "ns/elem");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (filter && !strstr(cases[i].name, filter)) continue;
        double med[2], flops = 0, elems = 0;
        for (int t = 0; t < 2; t++) {
            threadpool *tp = t ? tp2 : NULL;
            double times[REPS];
            run_case(&cases[i], tp, a, b, c, w, scratch, &flops, &elems); /* warm-up */
            for (int r = 0; r < REPS; r++) {
                double t0 = now_s();
                run_case(&cases[i], tp, a, b, c, w, scratch, &flops, &elems);
                times[r] = now_s() - t0;
            }
            qsort(times, REPS, sizeof times[0], cmp_double);
            med[t] = times[REPS / 2];
        }
        printf("%-36s %10.1f %10.1f %8.2f %10.2f %8.3f\n", cases[i].name, med[0] * 1e6, med[1] * 1e6,
               med[1] / med[0], flops / med[0] * 1e-9, med[0] / elems * 1e9);
    }
    threadpool_free(tp2);
    free(a);
    free(b);
    free(c);
    free(w);
    free(scratch);
    return 0;
}
