/*
 * effdet-bench: forward-pass speed (median of N runs after warm-up, per thread count,
 * with a per-stage and per-op-kind breakdown) and, with --images, the end-to-end
 * pipeline per stage on real photos and on large frames made from them at bench time.
 * Figures are medians: single runs on a shared 2-core machine are noise.
 *
 * The forward pass runs on --input FILE.f32 (NCHW float32, the network's input size),
 * the same file the ONNX Runtime peer reads (bench/vs-ort.sh); --make-inputs DIR writes
 * the two synthetic ones: black.f32 (every pixel 0, normalised exactly as the engine's
 * preprocessing does) and noise.f32 (uniform in [-2, 2], fixed seed). Without --input
 * the noise is generated in memory (the same values).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

#include "effdet.h"
#include "effdet_debug.h"

typedef struct {
    const char *model;
    const char *images;
    const char *input;       /* NCHW float32 file, or NULL: built-in noise */
    const char *make_inputs; /* write black.f32 and noise.f32 here and exit */
    int runs, warmup;
    int threads[8], nthreads;
    effdet_precision precision; /* --precision fp32|bf16 */
} options;

/* CPU time of the whole process (every thread), ms: on a loaded machine the time we
 * waited for a core is in the wall time but not here. */
static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Uniform noise in [-2, 2) from a fixed seed (a dark, noisy sensor). */
static void fill_noise(float *x, size_t n) {
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) / 16777216.0 * 4.0 - 2.0);
    }
}

static int write_floats(const char *dir, const char *name, const float *x, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(x, sizeof *x, n, f) == n;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "effdet-bench: %s: %s\n", path, strerror(errno));
    else printf("%s\n", path);
    return ok ? 0 : -1;
}

/* --make-inputs: the black frame through the engine's own normalisation, and the noise. */
static int make_inputs(const effdet_info *info, const char *dir) {
    int w = info->input_w, h = info->input_h;
    size_t n = (size_t)w * h * 3;
    uint8_t *black = calloc(n, 1);
    float *x = malloc(n * sizeof *x);
    int rc = -1;
    if (black && x) {
        effdet_normalize_nchw(black, w, h, x);
        rc = write_floats(dir, "black.f32", x, n);
        fill_noise(x, n);
        rc |= write_floats(dir, "noise.f32", x, n);
    }
    free(black);
    free(x);
    return rc;
}

/* The forward pass's input: --input's file (exactly the network's size) or noise. */
static float *load_input(const effdet_info *info, const char *path) {
    size_t n = (size_t)info->input_h * info->input_w * 3;
    float *x = malloc(n * sizeof *x);
    if (!x) return NULL;
    if (!path) {
        fill_noise(x, n);
        return x;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "effdet-bench: --input %s: %s\n", path, strerror(errno));
        free(x);
        return NULL;
    }
    size_t got = fread(x, sizeof *x, n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) {
        fprintf(stderr, "effdet-bench: --input %s: expected %zu bytes (1x3x%dx%d float32)\n", path, n * sizeof *x,
                info->input_h, info->input_w);
        free(x);
        return NULL;
    }
    return x;
}

/* Forward pass at one thread count: medians of total, stages and op kinds. */
static int bench_forward(const effdet_model *m, const options *o, int threads) {
    effdet_context *ctx;
    effdet_error err;
    if (effdet_context_create(m, threads, &ctx, &err)) {
        fprintf(stderr, "effdet-bench: %s\n", err.msg);
        return -1;
    }
    effdet_context_set_profiling(ctx, 1);
    const effdet_info *info = effdet_model_info(m);
    float *input = load_input(info, o->input);
    if (!input) {
        effdet_context_free(ctx);
        return -1;
    }
    int R = o->runs;
    double *total = calloc((size_t)R, sizeof(double)), *cpu = calloc((size_t)R, sizeof(double)), *stage[3],
           *ops[EFFDET_OP_COUNT];
    for (int s = 0; s < 3; s++) stage[s] = calloc((size_t)R, sizeof(double));
    for (int k = 0; k < EFFDET_OP_COUNT; k++) ops[k] = calloc((size_t)R, sizeof(double));
    for (int i = 0; i < o->warmup; i++) effdet_forward(ctx, input, NULL);
    for (int i = 0; i < R; i++) {
        double t0 = effdet_now_ms(), c0 = cpu_ms();
        effdet_forward(ctx, input, NULL);
        total[i] = effdet_now_ms() - t0;
        cpu[i] = cpu_ms() - c0;
        const effdet_forward_timing *t = effdet_context_timing(ctx);
        stage[0][i] = t->backbone_ms, stage[1][i] = t->bifpn_ms, stage[2][i] = t->heads_ms;
        for (int k = 0; k < EFFDET_OP_COUNT; k++) ops[k][i] = t->op_ms[k];
    }
    double mn = total[0];
    for (int i = 1; i < R; i++) mn = total[i] < mn ? total[i] : mn;
    printf("forward %s %dx%d, %d thread%s, %s kernels, %s, input %s: median %.2f ms (min %.2f, %d runs)\n",
           info->name, info->input_w, info->input_h, threads, threads > 1 ? "s" : "", effdet_context_isa(ctx),
           effdet_precision_name(info->precision),
           o->input ? o->input : "noise (built in)", median(total, R), mn, R);
    printf("  cpu time: median %.2f ms (all threads; the pool's spin-waits included)\n", median(cpu, R));
    const char *why_not_amx, *bf16 = effdet_context_bf16_kernel(ctx, &why_not_amx);
    if (bf16)
        printf("  bf16 1x1 kernel: %s%s%s\n", bf16, why_not_amx ? " - no AMX: " : "",
               why_not_amx ? why_not_amx : "");
    printf("  arena: %.1f MiB (%zu bytes)\n", effdet_context_arena_bytes(ctx) / 1048576.0, effdet_context_arena_bytes(ctx));
    printf("  stages: backbone %.2f  bifpn %.2f  heads %.2f ms\n", median(stage[0], R), median(stage[1], R),
           median(stage[2], R));
    printf("  ops:   ");
    for (int k = 0; k < EFFDET_OP_COUNT; k++) printf(" %s %.2f", effdet_op_kind_name((effdet_op_kind)k), median(ops[k], R));
    printf(" ms\n");
    free(total);
    free(cpu);
    for (int s = 0; s < 3; s++) free(stage[s]);
    for (int k = 0; k < EFFDET_OP_COUNT; k++) free(ops[k]);
    free(input);
    effdet_context_free(ctx);
    return 0;
}

/* Encode like a camera does: baseline, 4:2:0 chroma, quality 85 (the library's own
 * encoder keeps 4:4:4 so drawn boxes stay crisp, which would make frames unrealistically
 * large); restart_rows > 0 adds a restart marker every that many MCU rows, as some
 * camera encoders do (libjpeg's and Pillow's defaults write none). */
static uint8_t *encode_camera_jpeg(const effdet_image *img, int restart_rows, size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long out_len = 0;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &out_len);
    c.image_width = (JDIMENSION)img->width;
    c.image_height = (JDIMENSION)img->height;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c); /* 2x2 chroma subsampling */
    jpeg_set_quality(&c, 85, TRUE);
    c.restart_in_rows = restart_rows;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = img->rgb + (size_t)c.next_scanline * img->width * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = out_len;
    return out;
}

/* Bilinear upscale of a decoded photo to w x h: a stand-in for a camera frame of that
 * size (smooth content, like a real scene at higher resolution). */
static uint8_t *make_frame(const effdet_image *src, int w, int h, int restart_rows, size_t *len) {
    effdet_image big = {.rgb = malloc((size_t)w * h * 3), .width = w, .height = h};
    if (!big.rgb) return NULL;
    for (int y = 0; y < h; y++) {
        double fy = (y + 0.5) * src->height / h - 0.5;
        int y0 = fy < 0 ? 0 : (int)fy, y1 = y0 + 1 < src->height ? y0 + 1 : y0;
        double wy = fy < 0 ? 0 : fy - y0;
        for (int x = 0; x < w; x++) {
            double fx = (x + 0.5) * src->width / w - 0.5;
            int x0 = fx < 0 ? 0 : (int)fx, x1 = x0 + 1 < src->width ? x0 + 1 : x0;
            double wx = fx < 0 ? 0 : fx - x0;
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = src->rgb;
                double top = p[((size_t)y0 * src->width + x0) * 3 + c] * (1 - wx) + p[((size_t)y0 * src->width + x1) * 3 + c] * wx;
                double bot = p[((size_t)y1 * src->width + x0) * 3 + c] * (1 - wx) + p[((size_t)y1 * src->width + x1) * 3 + c] * wx;
                big.rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(top * (1 - wy) + bot * wy + 0.5);
            }
        }
    }
    uint8_t *out = encode_camera_jpeg(&big, restart_rows, len);
    free(big.rgb);
    return out;
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = buf ? (size_t)n : 0;
    return buf;
}

/* One JPEG of the end-to-end table: its bytes, whether DCT scaling is on, and the
 * per-run stage times (decode, letterbox, forward, post-process, total). */
typedef struct {
    char name[64];
    uint8_t *jpeg;
    size_t len;
    int scaled;
    int w, h;
    double *v[5];
} e2e_case;

static int add_case(e2e_case *c, int *n, int cap, const char *name, const uint8_t *jpeg, size_t len, int scaled,
                    int runs) {
    if (*n >= cap) return -1;
    e2e_case *e = &c[(*n)++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->jpeg = malloc(len);
    if (!e->jpeg) return -1;
    memcpy(e->jpeg, jpeg, len);
    e->len = len;
    e->scaled = scaled;
    for (int k = 0; k < 5; k++) e->v[k] = calloc((size_t)runs, sizeof(double));
    return 0;
}

/* One detection of case c; run j < 0 is a warm-up. */
static int run_case(effdet_context *ctx, e2e_case *c, int j) {
    effdet_decode_opts d;
    effdet_decode_opts_default(&d);
    d.allow_dct_scaling = c->scaled;
    effdet_detect_opts det;
    effdet_detect_opts_default(&det);
    effdet_result r = {0};
    effdet_error err;
    double t0 = effdet_now_ms();
    if (effdet_detect_jpeg(ctx, c->jpeg, c->len, &d, &det, &r, &err)) {
        fprintf(stderr, "effdet-bench: %s: %s\n", c->name, err.msg);
        return -1;
    }
    double t = effdet_now_ms() - t0;
    c->w = r.image_w, c->h = r.image_h;
    if (j < 0) return 0;
    c->v[0][j] = r.decode_ms, c->v[1][j] = r.preprocess_ms, c->v[2][j] = r.forward_ms;
    c->v[3][j] = r.postprocess_ms, c->v[4][j] = t;
    return 0;
}

/* All cases at one thread count, interleaved: run i of every case before run i + 1 of
 * any, so a load change on the shared machine hits every case alike. Prints medians
 * and the 4K-scaled / 640x480-scaled ratio of the median totals. */
static int bench_cases(const effdet_model *m, e2e_case *c, int n, int threads, const options *o) {
    effdet_context *ctx;
    effdet_error err;
    if (effdet_context_create(m, threads, &ctx, &err)) {
        fprintf(stderr, "effdet-bench: %s\n", err.msg);
        return -1;
    }
    int rc = 0;
    for (int i = -o->warmup; i < o->runs && !rc; i++)
        for (int k = 0; k < n && !rc; k++) rc = run_case(ctx, &c[k], i);
    effdet_context_free(ctx);
    if (rc) return rc;
    printf("end to end, %d thread%s (medians of %d interleaved runs):\n", threads, threads > 1 ? "s" : "", o->runs);
    double t640 = 0, t4k = 0, r640 = 0, r4k = 0;
    for (int k = 0; k < n; k++) {
        double med[5];
        for (int s = 0; s < 5; s++) med[s] = median(c[k].v[s], o->runs);
        printf("  %-28s %4dx%-4d %-6s decode %6.2f  letterbox %5.2f  forward %6.2f  postprocess %5.2f  total %6.2f ms\n",
               c[k].name, c[k].w, c[k].h, c[k].scaled ? "scaled" : "exact", med[0], med[1], med[2], med[3], med[4]);
        int rst = strstr(c[k].name, "RST") != NULL;
        if (c[k].scaled && c[k].w == 640 && c[k].h == 480 && !strncmp(c[k].name, "frame", 5))
            *(rst ? &r640 : &t640) = med[4];
        if (c[k].scaled && c[k].w == 3840 && c[k].h == 2160) *(rst ? &r4k : &t4k) = med[4];
    }
    if (t640 > 0 && t4k > 0)
        printf("  ratio frame 3840x2160 scaled / frame 640x480 scaled, %d thread%s: %.3f\n", threads,
               threads > 1 ? "s" : "", t4k / t640);
    if (r640 > 0 && r4k > 0)
        printf("  ratio frame 3840x2160 RST scaled / frame 640x480 RST scaled, %d thread%s: %.3f\n", threads,
               threads > 1 ? "s" : "", r4k / r640);
    return 0;
}

static int bench_images(const effdet_model *m, const options *o) {
    DIR *dir = opendir(o->images);
    if (!dir) {
        fprintf(stderr, "effdet-bench: %s: %s\n", o->images, strerror(errno));
        return -1;
    }
    char *names[256] = {0};
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && count < 256) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".jpg") == 0) names[count++] = strdup(e->d_name);
    }
    closedir(dir);
    qsort(names, (size_t)count, sizeof *names, cmp_name); /* readdir order is the file system's */
    enum { MAX_CASES = 64 };
    static e2e_case cases[MAX_CASES];
    int ncases = 0, rc = 0;
    for (int i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", o->images, names[i]);
        size_t len;
        uint8_t *jpeg = read_file(path, &len);
        if (jpeg) add_case(cases, &ncases, MAX_CASES, names[i], jpeg, len, 0, o->runs);
        /* Large frames: the first photo re-encoded like a camera at 640x480, 1080p and 4K. */
        effdet_image img;
        effdet_decode_opts d;
        effdet_decode_opts_default(&d);
        effdet_error err;
        if (jpeg && i == 0 && effdet_image_decode_jpeg(jpeg, len, &d, &img, &err) == EFFDET_OK) {
            static const int sizes[3][2] = {{640, 480}, {1920, 1080}, {3840, 2160}};
            for (int s = 0; s < 3; s++)
                for (int rst = 0; rst < 2; rst++) {
                    size_t flen;
                    uint8_t *frame = make_frame(&img, sizes[s][0], sizes[s][1], rst, &flen);
                    char name[64];
                    snprintf(name, sizeof name, "frame %dx%d%s", sizes[s][0], sizes[s][1], rst ? " RST" : "");
                    if (frame) {
                        add_case(cases, &ncases, MAX_CASES, name, frame, flen, 0, o->runs);
                        add_case(cases, &ncases, MAX_CASES, name, frame, flen, 1, o->runs);
                    }
                    free(frame);
                }
            effdet_image_free(&img);
        }
        free(jpeg);
        free(names[i]);
    }
    printf("frames made from the first photo: baseline JPEG, 4:2:0, quality 85; \"RST\": a restart marker "
           "every MCU row\n");
    for (int t = 0; t < o->nthreads && !rc; t++) rc = bench_cases(m, cases, ncases, o->threads[t], o);
    for (int k = 0; k < ncases; k++) {
        free(cases[k].jpeg);
        for (int s = 0; s < 5; s++) free(cases[k].v[s]);
    }
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: effdet-bench --model W.safetensors [--runs N] [--warmup N] [--threads 1,2] [--input X.f32]\n"
               "       effdet-bench --model W.safetensors --images DIR [--runs N] [--threads 1,2]\n"
               "       effdet-bench --model W.safetensors --make-inputs DIR   (writes DIR/black.f32, DIR/noise.f32)\n"
               "  --precision fp32|bf16   arithmetic of the 1x1 convs (default fp32; bf16 needs AVX512_BF16)\n");
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"runs", required_argument, 0, 'r'},
        {"warmup", required_argument, 0, 'w'}, {"threads", required_argument, 0, 'j'},
        {"images", required_argument, 0, 'i'}, {"input", required_argument, 0, 'x'},
        {"make-inputs", required_argument, 0, 'M'}, {"precision", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    options o = {.runs = 30, .warmup = 3, .threads = {1, 2}, .nthreads = 2};
    int c;
    effdet_error err;
    while ((c = getopt_long(argc, argv, "m:r:w:j:i:x:M:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'r': o.runs = atoi(optarg); break;
        case 'w': o.warmup = atoi(optarg); break;
        case 'i': o.images = optarg; break;
        case 'x': o.input = optarg; break;
        case 'M': o.make_inputs = optarg; break;
        case 'p':
            if (effdet_precision_parse(optarg, &o.precision, &err)) {
                fprintf(stderr, "effdet-bench: --precision: %s\n", err.msg);
                return 2;
            }
            break;
        case 'j': {
            o.nthreads = 0;
            for (char *s = optarg; *s && o.nthreads < 8;) {
                o.threads[o.nthreads++] = (int)strtol(s, &s, 10);
                if (*s == ',') s++;
                else if (*s) break;
            }
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!o.model || o.runs < 1 || o.warmup < 0 || o.nthreads < 1) {
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < o.nthreads; i++)
        if (o.threads[i] < 1 || o.threads[i] > 256) {
            fprintf(stderr, "effdet-bench: --threads: each count must be 1..256\n");
            return 2;
        }
    effdet_model *m;
    effdet_load_opts lo;
    effdet_load_opts_default(&lo);
    lo.precision = o.precision;
    if (effdet_model_load_opts(o.model, &lo, &m, &err)) {
        fprintf(stderr, "effdet-bench: %s\n", err.msg);
        return 2;
    }
    int rc = 0;
    if (o.make_inputs) rc = make_inputs(effdet_model_info(m), o.make_inputs);
    else if (o.images) rc = bench_images(m, &o);
    else
        for (int i = 0; i < o.nthreads; i++) rc |= bench_forward(m, &o, o.threads[i]);
    effdet_model_free(m);
    return rc ? 1 : 0;
}
