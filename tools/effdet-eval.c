/*
 * effdet-eval: run a model on every image of a COCO annotation file and print its COCO
 * bbox metrics (the 12 numbers of pycocotools' summarize(), and AP per category) as one
 * JSON object; or score a results file that something else produced (--eval-only).
 *
 * Workers: --threads N starts N threads, each with its own effdet_context of one
 * thread, taking the next image from a shared counter. Images are independent and
 * small models are cheap per image, so this scales better than one context splitting
 * each forward pass N ways, and it needs no locking beyond the counter.
 *
 * Exit status: 0 done; 1 an input is missing or malformed (one-line message naming it);
 * 2 usage or model error.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coco_eval.h"
#include "effdet.h"

typedef enum { MAP_AUTO, MAP_ID, MAP_LABEL } map_kind;

typedef struct {
    const char *model_path, *annotations, *images_dir, *detections_out, *eval_only;
    int threads;
    effdet_precision precision;
    map_kind map;
    int pretty;
    effdet_detect_opts det;
} options;

static void usage(FILE *f) {
    fprintf(f, "usage: effdet-eval --model W --annotations A.json --images DIR [options]\n"
               "       effdet-eval --annotations A.json --eval-only RESULTS.json\n"
               "\n"
               "  -m, --model PATH          weights (.safetensors)\n"
               "  -a, --annotations FILE    COCO annotation file (images, annotations, categories)\n"
               "  -i, --images DIR          directory holding the images' file_name\n"
               "  -o, --detections OUT      also write the detections (COCO results format)\n"
               "  -j, --threads N           worker threads, one image each at a time (default 1)\n"
               "      --precision fp32|bf16 arithmetic of the 1x1 convs (default fp32; bf16 needs\n"
               "                            AVX512_BF16)\n"
               "  -n, --max-detections N    detections kept per image (default 100, as COCO)\n"
               "  -t, --threshold X         minimum score (default 0: keep every detection)\n"
               "      --map auto|id|label   category id -> model class: by id (COCO models, 90\n"
               "                            classes) or by label name (custom models); default auto\n"
               "      --eval-only RESULTS   score a COCO results file; no model, no images\n"
               "      --pretty              indent the JSON output\n"
               "  -h, --help                this text\n");
}

static int parse_int(const char *s, const char *flag, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "effdet-eval: %s: '%s' is not an integer in %d..%d\n", flag, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, options *o) {
    enum { O_MAP = 256, O_EVAL_ONLY, O_PRETTY, O_PRECISION };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"annotations", required_argument, 0, 'a'},
        {"images", required_argument, 0, 'i'},
        {"detections", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 'j'},
        {"max-detections", required_argument, 0, 'n'},
        {"threshold", required_argument, 0, 't'},
        {"map", required_argument, 0, O_MAP},
        {"eval-only", required_argument, 0, O_EVAL_ONLY},
        {"pretty", no_argument, 0, O_PRETTY},
        {"precision", required_argument, 0, O_PRECISION},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    effdet_detect_opts_default(&o->det);
    o->threads = 1;
    int c;
    while ((c = getopt_long(argc, argv, "m:a:i:o:j:n:t:h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm': o->model_path = optarg; break;
        case 'a': o->annotations = optarg; break;
        case 'i': o->images_dir = optarg; break;
        case 'o': o->detections_out = optarg; break;
        case 'j':
            if (parse_int(optarg, "--threads", 1, 256, &o->threads)) return -1;
            break;
        case 'n':
            if (parse_int(optarg, "--max-detections", 1, 5000, &o->det.max_detections)) return -1;
            break;
        case 't':
            o->det.score_threshold = strtof(optarg, &end);
            if (*end || end == optarg || !(o->det.score_threshold >= 0 && o->det.score_threshold <= 1)) {
                fprintf(stderr, "effdet-eval: --threshold: '%s' is not a number in 0..1\n", optarg);
                return -1;
            }
            break;
        case O_PRECISION: {
            effdet_error e;
            if (effdet_precision_parse(optarg, &o->precision, &e)) {
                fprintf(stderr, "effdet-eval: --precision: %s\n", e.msg);
                return -1;
            }
            break;
        }
        case O_MAP:
            if (strcmp(optarg, "auto") == 0)
                o->map = MAP_AUTO;
            else if (strcmp(optarg, "id") == 0)
                o->map = MAP_ID;
            else if (strcmp(optarg, "label") == 0)
                o->map = MAP_LABEL;
            else {
                fprintf(stderr, "effdet-eval: --map: expected auto, id or label, got '%s'\n", optarg);
                return -1;
            }
            break;
        case O_EVAL_ONLY: o->eval_only = optarg; break;
        case O_PRETTY: o->pretty = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "effdet-eval: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->annotations) {
        fprintf(stderr, "effdet-eval: --annotations is required\n");
        return -1;
    }
    if (!o->eval_only && (!o->model_path || !o->images_dir)) {
        fprintf(stderr, "effdet-eval: --model and --images are required (or --eval-only RESULTS.json)\n");
        return -1;
    }
    return 0;
}

static void *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
        (buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
        *len = fread(buf, 1, (size_t)st.st_size, f);
        if (*len != (size_t)st.st_size) {
            free(buf);
            buf = NULL;
            errno = EIO;
        }
    } else if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
    }
    fclose(f);
    return buf;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ category mapping */

/* class_cat[c] = category id for model class c (0-based), or -1: not evaluated. */
static int build_mapping(const effdet_model *m, const coco_dataset *d, map_kind kind, int *class_cat,
                         const char **used) {
    const effdet_info *info = effdet_model_info(m);
    if (kind == MAP_AUTO) kind = info->num_classes == 90 ? MAP_ID : MAP_LABEL;
    if (kind == MAP_ID) {
        *used = "id";
        for (int c = 0; c < info->num_classes; c++) class_cat[c] = c + 1;
        for (int k = 0; k < d->num_categories; k++) {
            const char *l = d->categories[k].id >= 1 && d->categories[k].id <= info->num_classes
                                ? effdet_model_label(m, d->categories[k].id - 1)
                                : NULL;
            if (!l || strcmp(l, d->categories[k].name) != 0)
                fprintf(stderr, "effdet-eval: warning: category %d '%s' is model class '%s' by id\n",
                        d->categories[k].id, d->categories[k].name, l ? l : "(none)");
        }
        return 0;
    }
    *used = "label";
    int matched = 0;
    for (int c = 0; c < info->num_classes; c++) {
        const char *l = effdet_model_label(m, c);
        class_cat[c] = -1;
        for (int k = 0; l && k < d->num_categories; k++)
            if (strcmp(l, d->categories[k].name) == 0) class_cat[c] = d->categories[k].id;
    }
    for (int k = 0; k < d->num_categories; k++) {
        int found = 0;
        for (int c = 0; c < info->num_classes; c++) found |= class_cat[c] == d->categories[k].id;
        if (found)
            matched++;
        else
            fprintf(stderr,
                    "effdet-eval: warning: category %d '%s' matches no label of the model: it gets no "
                    "detections\n",
                    d->categories[k].id, d->categories[k].name);
    }
    if (!matched) {
        fprintf(stderr,
                "effdet-eval: no category name of the annotation file is a label of %s (try --map id)\n",
                info->name);
        return -1;
    }
    return 0;
}

/* --------------------------------------------------------------------- workers */

typedef struct {
    effdet_detection *dets;
    int count;
} image_result;

typedef struct {
    const options *o;
    const effdet_model *model;
    const coco_dataset *d;
    image_result *results;
    atomic_int next, done, failed;
    pthread_mutex_t err_lock;
    char err[1024];
} run_state;

static void set_error(run_state *s, const char *fmt, const char *a, const char *b) {
    pthread_mutex_lock(&s->err_lock);
    if (!atomic_load(&s->failed)) snprintf(s->err, sizeof s->err, fmt, a, b);
    atomic_store(&s->failed, 1);
    pthread_mutex_unlock(&s->err_lock);
}

static void image_path(const options *o, const coco_image *im, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", o->images_dir, im->file_name);
}

static int detect_one(run_state *s, effdet_context *ctx, int i) {
    char path[4096];
    image_path(s->o, &s->d->images[i], path, sizeof path);
    size_t len = 0;
    uint8_t *jpeg = read_file(path, &len);
    if (!jpeg) {
        set_error(s, "effdet-eval: %s: %s", path, strerror(errno ? errno : EIO));
        return -1;
    }
    effdet_decode_opts dopts;
    effdet_decode_opts_default(&dopts);
    effdet_result r;
    effdet_error err;
    effdet_status st = effdet_detect_jpeg(ctx, jpeg, len, &dopts, &s->o->det, &r, &err);
    free(jpeg);
    if (st) {
        set_error(s, "effdet-eval: %s: %s", path, err.msg);
        return -1;
    }
    image_result *out = &s->results[i];
    out->dets = malloc(sizeof *out->dets * (size_t)(r.count ? r.count : 1));
    if (!out->dets) {
        set_error(s, "effdet-eval: %s: %s", path, "out of memory");
        return -1;
    }
    memcpy(out->dets, r.dets, sizeof *out->dets * (size_t)r.count);
    out->count = r.count;
    return 0;
}

static void *worker_main(void *arg) {
    run_state *s = arg;
    effdet_context *ctx = NULL;
    effdet_error err;
    if (effdet_context_create(s->model, 1, &ctx, &err)) {
        set_error(s, "effdet-eval: %s%s", err.msg, "");
        return NULL;
    }
    for (;;) {
        int i = atomic_fetch_add(&s->next, 1);
        if (i >= s->d->num_images || atomic_load(&s->failed)) break;
        if (detect_one(s, ctx, i)) break;
        atomic_fetch_add(&s->done, 1);
    }
    effdet_context_free(ctx);
    return NULL;
}

static void progress(const run_state *s, double t0, int final) {
    int done = atomic_load(&s->done), n = s->d->num_images;
    double el = now_s() - t0, rate = el > 0 ? done / el : 0;
    int eta = rate > 0 ? (int)((n - done) / rate + 0.5) : 0;
    fprintf(stderr, "\r%d/%d images, %.1f images/s, ETA %d:%02d ", done, n, rate, eta / 60, eta % 60);
    if (final) fputc('\n', stderr);
}

/* Every image must be there before the first forward pass: a missing file found after
 * an hour of inference would waste the hour. */
static int check_images(const options *o, const coco_dataset *d) {
    char path[4096];
    for (int i = 0; i < d->num_images; i++) {
        if (!d->images[i].file_name) {
            fprintf(stderr, "effdet-eval: %s: images[%d] (id %lld) has no file_name\n", o->annotations, i,
                    d->images[i].id);
            return -1;
        }
        image_path(o, &d->images[i], path, sizeof path);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "effdet-eval: %s: %s (listed in %s)\n", path, strerror(errno), o->annotations);
            return -1;
        }
    }
    return 0;
}

static int run_images(const options *o, const effdet_model *m, const coco_dataset *d, image_result *results,
                      double *seconds) {
    run_state s = {.o = o, .model = m, .d = d, .results = results};
    pthread_mutex_init(&s.err_lock, NULL);
    int n = o->threads < d->num_images ? o->threads : (d->num_images ? d->num_images : 1);
    pthread_t *tids = calloc((size_t)n, sizeof *tids);
    int started = 0, tty = isatty(STDERR_FILENO);
    double t0 = now_s();
    if (!tids) {
        fprintf(stderr, "effdet-eval: out of memory\n");
        return -1;
    }
    for (; started < n; started++)
        if (pthread_create(&tids[started], NULL, worker_main, &s)) break;
    if (!started) set_error(&s, "effdet-eval: cannot start a worker thread%s%s", "", "");
    while (tty && started && atomic_load(&s.done) < d->num_images && !atomic_load(&s.failed)) {
        progress(&s, t0, 0);
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
    if (tty && !atomic_load(&s.failed)) progress(&s, t0, 1);
    *seconds = now_s() - t0;
    free(tids);
    pthread_mutex_destroy(&s.err_lock);
    if (atomic_load(&s.failed)) {
        if (tty) fputc('\n', stderr);
        fprintf(stderr, "%s\n", s.err);
        return -1;
    }
    return 0;
}

/* Our detections in COCO terms: bbox = [x1, y1, x2 - x1, y2 - y1] (computed in float, as
 * the reference's evaluator does on its float32 boxes). */
static coco_det *to_coco(const coco_dataset *d, const image_result *res, const int *class_cat,
                         int num_classes, size_t *count) {
    size_t n = 0;
    for (int i = 0; i < d->num_images; i++) n += (size_t)res[i].count;
    coco_det *out = malloc(sizeof *out * (n ? n : 1));
    if (!out) return NULL;
    n = 0;
    for (int i = 0; i < d->num_images; i++)
        for (int j = 0; j < res[i].count; j++) {
            const effdet_detection *e = &res[i].dets[j];
            int c = e->class_id - 1;
            if (c < 0 || c >= num_classes || class_cat[c] < 0) continue;
            float w = e->x2 - e->x1, h = e->y2 - e->y1;
            out[n++] = (coco_det){d->images[i].id, class_cat[c], {e->x1, e->y1, w, h}, e->score};
        }
    *count = n;
    return out;
}

/* %.17g: the file reads back to the very doubles we scored (--eval-only on it agrees). */
static int write_results(const char *path, const coco_det *dets, size_t n) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "effdet-eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs("[", f);
    for (size_t i = 0; i < n; i++) {
        const coco_det *r = &dets[i];
        fprintf(
            f,
            "%s\n{\"image_id\":%lld,\"category_id\":%d,\"bbox\":[%.17g,%.17g,%.17g,%.17g],\"score\":%.17g}",
            i ? "," : "", r->image_id, r->category_id, r->bbox.x, r->bbox.y, r->bbox.w, r->bbox.h, r->score);
    }
    fputs("\n]\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "effdet-eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* -------------------------------------------------------------------- output */

static json_object *metrics_json(const coco_dataset *d, const coco_metrics *mt) {
    json_object *j = json_object_new_object();
    for (int s = 0; s < COCO_NUM_STATS; s++)
        json_object_object_add(j, coco_stat_names[s], json_object_new_double(mt->stats[s]));
    json_object *per = json_object_new_array();
    for (int r = 0; r < d->num_categories; r++) {
        int k = d->category_order[r];
        json_object *c = json_object_new_object();
        json_object_object_add(c, "id", json_object_new_int(d->categories[k].id));
        json_object_object_add(c, "name", json_object_new_string(d->categories[k].name));
        json_object_object_add(c, "AP", json_object_new_double(mt->category_ap[k]));
        json_object_object_add(c, "objects", json_object_new_int(mt->category_gts[k]));
        json_object_array_add(per, c);
    }
    json_object_object_add(j, "per_class", per);
    return j;
}

static int evaluate_and_print(const options *o, const coco_dataset *d, const coco_det *dets, size_t n,
                              json_object *extra) {
    coco_metrics mt;
    char err[512];
    if (coco_evaluate(d, dets, n, &mt, err, sizeof err)) {
        fprintf(stderr, "effdet-eval: %s\n", err);
        json_object_put(extra);
        return 1;
    }
    json_object *j = metrics_json(d, &mt);
    struct json_object_iterator it = json_object_iter_begin(extra), end = json_object_iter_end(extra);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
        json_object_object_add(j, json_object_iter_peek_name(&it),
                               json_object_get(json_object_iter_peek_value(&it)));
    json_object_put(extra);
    json_object_object_add(j, "images", json_object_new_int(d->num_images));
    json_object_object_add(j, "detections", json_object_new_int64((int64_t)n));
    puts(json_object_to_json_string_ext(j, o->pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    coco_metrics_free(&mt);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int load_annotations(const options *o, coco_dataset *d) {
    size_t len = 0;
    char *json = read_file(o->annotations, &len);
    char err[512];
    if (!json) {
        fprintf(stderr, "effdet-eval: %s: %s\n", o->annotations, strerror(errno ? errno : EIO));
        return -1;
    }
    int rc = coco_dataset_parse(json, len, o->annotations, d, err, sizeof err);
    free(json);
    if (rc) {
        fprintf(stderr, "effdet-eval: %s\n", err);
        return -1;
    }
    if (d->zero_id_gts)
        fprintf(stderr,
                "effdet-eval: warning: %s: %d annotation(s) with id 0 can never count as found "
                "(pycocotools' rule, reproduced here)\n",
                o->annotations, d->zero_id_gts);
    return 0;
}

static int run_eval_only(const options *o, const coco_dataset *d) {
    size_t len = 0, n = 0;
    char *json = read_file(o->eval_only, &len);
    char err[512];
    coco_det *dets = NULL;
    if (!json) {
        fprintf(stderr, "effdet-eval: %s: %s\n", o->eval_only, strerror(errno ? errno : EIO));
        return 1;
    }
    int rc = coco_results_parse(json, len, o->eval_only, d, &dets, &n, err, sizeof err);
    free(json);
    if (rc) {
        fprintf(stderr, "effdet-eval: %s\n", err);
        return 1;
    }
    json_object *extra = json_object_new_object();
    json_object_object_add(extra, "results", json_object_new_string(o->eval_only));
    json_object_object_add(extra, "annotations", json_object_new_string(o->annotations));
    rc = evaluate_and_print(o, d, dets, n, extra);
    free(dets);
    return rc;
}

static int run_model(const options *o, const coco_dataset *d) {
    effdet_model *m = NULL;
    effdet_error err;
    image_result *results = NULL;
    coco_det *dets = NULL;
    int *class_cat = NULL, rc = 2;
    const char *mapping = NULL;
    effdet_load_opts lo;
    effdet_load_opts_default(&lo);
    lo.precision = o->precision;
    if (effdet_model_load_opts(o->model_path, &lo, &m, &err)) {
        fprintf(stderr, "effdet-eval: %s\n", err.msg);
        return 2;
    }
    const effdet_info *info = effdet_model_info(m);
    class_cat = malloc(sizeof *class_cat * (size_t)info->num_classes);
    results = calloc((size_t)(d->num_images ? d->num_images : 1), sizeof *results);
    if (!class_cat || !results) {
        fprintf(stderr, "effdet-eval: out of memory\n");
        goto done;
    }
    if (build_mapping(m, d, o->map, class_cat, &mapping)) goto done;
    rc = 1;
    double seconds = 0;
    if (check_images(o, d) || run_images(o, m, d, results, &seconds)) goto done;
    size_t n = 0;
    if (!(dets = to_coco(d, results, class_cat, info->num_classes, &n))) {
        fprintf(stderr, "effdet-eval: out of memory\n");
        goto done;
    }
    if (o->detections_out && write_results(o->detections_out, dets, n)) goto done;
    json_object *extra = json_object_new_object();
    json_object_object_add(extra, "model", json_object_new_string(info->name));
    json_object_object_add(extra, "model_file", json_object_new_string(o->model_path));
    json_object_object_add(extra, "annotations", json_object_new_string(o->annotations));
    json_object_object_add(extra, "category_mapping", json_object_new_string(mapping));
    json_object_object_add(extra, "max_detections", json_object_new_int(o->det.max_detections));
    json_object_object_add(extra, "threads", json_object_new_int(o->threads));
    json_object_object_add(extra, "precision", json_object_new_string(effdet_precision_name(o->precision)));
    json_object_object_add(extra, "seconds", json_object_new_double(seconds));
    json_object_object_add(extra, "images_per_second",
                           json_object_new_double(seconds > 0 ? d->num_images / seconds : 0));
    rc = evaluate_and_print(o, d, dets, n, extra);
done:
    for (int i = 0; results && i < d->num_images; i++) free(results[i].dets);
    free(results);
    free(dets);
    free(class_cat);
    effdet_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    options o;
    if (parse_args(argc, argv, &o)) return 2;
    coco_dataset d;
    if (load_annotations(&o, &d)) return 1;
    int rc = o.eval_only ? run_eval_only(&o, &d) : run_model(&o, &d);
    coco_dataset_free(&d);
    return rc;
}
