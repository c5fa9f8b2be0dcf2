/*
 * effdet-detect: run EfficientDet on JPEG files and print one JSON object per image;
 * describe an architecture without weights (with --tensors: every tensor its weights
 * must hold, as the loader checks them; effdet-convert relies on it); or run the raw
 * network on a preprocessed tensor and dump every intermediate in the reference
 * fixtures' layout (to verify a converted model against the reference implementation).
 *
 * Exit status: 0 all images processed, 1 some image or file failed (one-line message
 * on stderr each; the other images are still processed), 2 usage or model error.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "effdet.h"
#include "effdet_debug.h"

#define DEFAULT_MODEL "models/tf_efficientdet_d0.safetensors"

typedef struct {
    const char *model_path;
    const char *describe;
    const char *describe_config; /* --describe-config FILE ("-" = stdin) */
    int tensors;                 /* --tensors: with a describe, every expected tensor */
    int list_models;             /* --list-models */
    const char *raw_input;
    const char *dump_dir;
    const char *draw_path;
    const char *classes;
    int image_w, image_h; /* --image-size for --raw-input: also write image-frame detections */
    int num_classes;
    int threads;
    effdet_precision precision;
    int fast_decode;
    int pretty;
    effdet_detect_opts det;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: effdet-detect [options] IMAGE.jpg...\n"
            "       effdet-detect --describe NAME [--num-classes N] [--tensors]\n"
            "       effdet-detect --describe-config CONFIG.json [--num-classes N] [--tensors]\n"
            "       effdet-detect --list-models [--num-classes N] [--tensors]\n"
            "       effdet-detect --model W --raw-input X.f32 --dump DIR [--image-size WxH]\n"
            "       effdet-detect --cpu     CPU features and the kernel level selected, as JSON\n"
            "\n"
            "  -m, --model PATH        weights (.safetensors); default $EFFDET_MODEL or " DEFAULT_MODEL "\n"
            "  -t, --threshold X       minimum score, 0..1 (default 0: every detection up to the cap)\n"
            "  -n, --max-detections N  at most N detections per image (default 100)\n"
            "  -c, --classes LIST      only these labels, comma-separated (e.g. person,car)\n"
            "      --nms hard|soft     hard NMS (IoU > 0.5, default) or gaussian soft-NMS\n"
            "  -j, --threads N         threads for inference (default 1)\n"
            "      --precision P       fp32 (default) or bf16: 1x1 convs in bfloat16 (needs a\n"
            "                          CPU with AVX512_BF16; not bit-exact with the reference)\n"
            "      --fast-decode       let libjpeg downscale large images while decoding (not\n"
            "                          bit-exact with the reference pipeline)\n"
            "  -d, --draw OUT.jpg      write the (single) image with boxes and labels drawn\n"
            "      --describe NAME     print an architecture as JSON (no weights needed); NAME is\n"
            "                          one of the names listed at the end\n"
            "      --num-classes N     class count for --describe (default 90)\n"
            "      --describe-config F a custom architecture from its config (JSON object as in a\n"
            "                          weights file's __metadata__.config; - reads stdin)\n"
            "      --tensors           with --describe*: also list every tensor a weights file of\n"
            "                          that architecture must hold (name and shape)\n"
            "      --list-models       print every named architecture as a JSON array (with\n"
            "                          --tensors and --num-classes as for --describe)\n"
            "      --raw-input X.f32   run the network on an NCHW float32 input tensor\n"
            "      --dump DIR          with --raw-input: write every output tensor, top-k, detections\n"
            "      --image-size WxH    with --raw-input: original image size, for image-frame boxes\n"
            "      --pretty            indent the JSON output\n"
            "  -h, --help              this text\n"
            "\nknown architectures:");
    for (const char *const *n = effdet_known_models(); *n; n++) fprintf(f, " %s", *n);
    fputc('\n', f);
}

static int parse_int(const char *s, const char *flag, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "effdet-detect: %s: '%s' is not an integer in %d..%d\n", flag, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, options *o) {
    enum { O_NMS = 256, O_FAST, O_DESCRIBE, O_NUMCLS, O_RAW, O_DUMP, O_IMGSIZE, O_PRETTY, O_DESCCFG, O_TENSORS,
           O_LIST, O_PRECISION };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},     {"threshold", required_argument, 0, 't'},
        {"max-detections", required_argument, 0, 'n'}, {"classes", required_argument, 0, 'c'},
        {"nms", required_argument, 0, O_NMS},     {"threads", required_argument, 0, 'j'},
        {"fast-decode", no_argument, 0, O_FAST},  {"draw", required_argument, 0, 'd'},
        {"describe", required_argument, 0, O_DESCRIBE}, {"num-classes", required_argument, 0, O_NUMCLS},
        {"raw-input", required_argument, 0, O_RAW}, {"dump", required_argument, 0, O_DUMP},
        {"image-size", required_argument, 0, O_IMGSIZE}, {"pretty", no_argument, 0, O_PRETTY},
        {"describe-config", required_argument, 0, O_DESCCFG}, {"tensors", no_argument, 0, O_TENSORS},
        {"list-models", no_argument, 0, O_LIST},  {"precision", required_argument, 0, O_PRECISION},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    effdet_detect_opts_default(&o->det);
    o->threads = 1;
    o->model_path = getenv("EFFDET_MODEL");
    if (!o->model_path || !*o->model_path) o->model_path = DEFAULT_MODEL;
    int c;
    while ((c = getopt_long(argc, argv, "m:t:n:c:j:d:h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm': o->model_path = optarg; break;
        case 't':
            o->det.score_threshold = strtof(optarg, &end);
            if (*end || end == optarg || !(o->det.score_threshold >= 0 && o->det.score_threshold <= 1)) {
                fprintf(stderr, "effdet-detect: --threshold: '%s' is not a number in 0..1\n", optarg);
                return -1;
            }
            break;
        case 'n':
            if (parse_int(optarg, "--max-detections", 1, 5000, &o->det.max_detections)) return -1;
            break;
        case 'c': o->classes = optarg; break;
        case O_NMS:
            if (strcmp(optarg, "hard") == 0) o->det.nms = EFFDET_NMS_HARD;
            else if (strcmp(optarg, "soft") == 0) o->det.nms = EFFDET_NMS_SOFT;
            else {
                fprintf(stderr, "effdet-detect: --nms: expected hard or soft, got '%s'\n", optarg);
                return -1;
            }
            break;
        case 'j':
            if (parse_int(optarg, "--threads", 1, 256, &o->threads)) return -1;
            break;
        case O_PRECISION: {
            effdet_error e;
            if (effdet_precision_parse(optarg, &o->precision, &e)) {
                fprintf(stderr, "effdet-detect: --precision: %s\n", e.msg);
                return -1;
            }
            break;
        }
        case O_FAST: o->fast_decode = 1; break;
        case 'd': o->draw_path = optarg; break;
        case O_DESCRIBE: o->describe = optarg; break;
        case O_NUMCLS:
            if (parse_int(optarg, "--num-classes", 1, 10000, &o->num_classes)) return -1;
            break;
        case O_RAW: o->raw_input = optarg; break;
        case O_DUMP: o->dump_dir = optarg; break;
        case O_IMGSIZE:
            if (sscanf(optarg, "%dx%d", &o->image_w, &o->image_h) != 2 || o->image_w < 1 || o->image_h < 1) {
                fprintf(stderr, "effdet-detect: --image-size: expected WxH, got '%s'\n", optarg);
                return -1;
            }
            break;
        case O_PRETTY: o->pretty = 1; break;
        case O_DESCCFG: o->describe_config = optarg; break;
        case O_TENSORS: o->tensors = 1; break;
        case O_LIST: o->list_models = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    return 0;
}

/* Paths as written ("frames/cam1.jpg", not json-c's default "frames\/cam1.jpg"). */
static const char *json_text(json_object *j, int pretty) {
    return json_object_to_json_string_ext(j, (pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN) |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void print_json(json_object *j, int pretty) {
    puts(json_text(j, pretty));
    fflush(stdout);
}

/* Milliseconds with 3 decimals, as the daemon's timings_ms (a double would print 15+
 * digits of clock noise). */
static json_object *ms_json(double ms) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.3f", ms);
    return json_object_new_double_s(ms, buf);
}

/* ------------------------------------------------------------------ describe */

static json_object *int_array(const int *v, int n) {
    json_object *a = json_object_new_array();
    for (int i = 0; i < n; i++) json_object_array_add(a, json_object_new_int(v[i]));
    return a;
}

static json_object *info_json(const effdet_info *info) {
    json_object *j = json_object_new_object();
    json_object_object_add(j, "name", json_object_new_string(info->name));
    json_object_object_add(j, "backbone", json_object_new_string(info->backbone));
    int size[2] = {info->input_h, info->input_w};
    json_object_object_add(j, "input_size", int_array(size, 2));
    json_object_object_add(j, "num_classes", json_object_new_int(info->num_classes));
    json_object_object_add(j, "fpn_channels", json_object_new_int(info->fpn_channels));
    json_object_object_add(j, "fpn_cell_repeats", json_object_new_int(info->fpn_repeats));
    json_object_object_add(j, "box_class_repeats", json_object_new_int(info->head_repeats));
    json_object_object_add(j, "backbone_feature_channels", int_array(info->feature_channels, 3));
    json_object *levels = json_object_new_array();
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        json_object *lv = json_object_new_object();
        char name[8];
        snprintf(name, sizeof name, "P%d", info->min_level + l);
        json_object_object_add(lv, "level", json_object_new_string(name));
        int hw[2] = {info->level_h[l], info->level_w[l]};
        json_object_object_add(lv, "size", int_array(hw, 2));
        json_object_object_add(lv, "anchors", json_object_new_int(info->level_h[l] * info->level_w[l] * info->num_anchors));
        json_object_array_add(levels, lv);
    }
    json_object_object_add(j, "levels", levels);
    json_object_object_add(j, "anchors_per_location", json_object_new_int(info->num_anchors));
    json_object_object_add(j, "params", json_object_new_int64(info->params));
    if (info->arena_bytes) json_object_object_add(j, "arena_bytes", json_object_new_int64((int64_t)info->arena_bytes));
    return j;
}

static int run_describe(const options *o) {
    effdet_info info;
    effdet_error err;
    if (effdet_describe(o->describe, o->num_classes, &info, &err)) {
        fprintf(stderr, "effdet-detect: %s\n", err.msg);
        return 2;
    }
    json_object *j = info_json(&info);
    print_json(j, o->pretty);
    json_object_put(j);
    return 0;
}

/* ------------------------------------------------------------------ describe a config */

static json_object *tensors_json(const effdet_tensor_spec *t, int n) {
    json_object *arr = json_object_new_array();
    for (int i = 0; i < n; i++) {
        json_object *o = json_object_new_object(), *shape = json_object_new_array();
        for (int d = 0; d < t[i].ndim; d++) json_object_array_add(shape, json_object_new_int64(t[i].shape[d]));
        json_object_object_add(o, "name", json_object_new_string(t[i].name));
        json_object_object_add(o, "shape", shape);
        json_object_array_add(arr, o);
    }
    return arr;
}

/* The config text of --describe-config FILE (or stdin for "-"); NULL with a message. */
static char *read_config_text(const char *path) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "effdet-detect: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1) break;
        char *p = cap < ((size_t)64 << 20) ? realloc(buf, cap * 2) : NULL;
        if (!p) free(buf);
        buf = p, cap *= 2;
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "effdet-detect: %s: %s\n", path, buf ? "read error" : "too large or out of memory");
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* The config to describe: a named model's {"name", "num_classes"} or the file's own
 * object, with --num-classes overriding its class count. NULL with a message. */
static char *describe_config_text(const options *o) {
    json_object *root = NULL;
    if (o->describe_config) {
        char *text = read_config_text(o->describe_config);
        if (!text) return NULL;
        root = json_tokener_parse(text);
        free(text);
        if (!root || !json_object_is_type(root, json_type_object)) {
            fprintf(stderr, "effdet-detect: %s: not a JSON object\n", o->describe_config);
            json_object_put(root);
            return NULL;
        }
    } else {
        effdet_info info;
        effdet_error err;
        if (effdet_describe(o->describe, o->num_classes, &info, &err)) { /* an unknown name, said plainly */
            fprintf(stderr, "effdet-detect: %s\n", err.msg);
            return NULL;
        }
        root = json_object_new_object();
        json_object_object_add(root, "name", json_object_new_string(o->describe));
    }
    if (o->num_classes > 0) json_object_object_add(root, "num_classes", json_object_new_int(o->num_classes));
    char *s = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
    json_object_put(root);
    if (!s) fprintf(stderr, "effdet-detect: out of memory\n");
    return s;
}

/* --describe-config FILE, --describe NAME --tensors: the engine's own reading of a config,
 * through the loader's walk, so a converter can check a checkpoint before writing it. */
static int run_describe_config(const options *o) {
    char *config = describe_config_text(o);
    if (!config) return 2;
    effdet_info info;
    effdet_error err;
    effdet_tensor_spec *specs = NULL;
    int n = 0;
    const char *where = o->describe_config ? o->describe_config : o->describe;
    if (effdet_describe_config(config, where, &info, o->tensors ? &specs : NULL, &n, &err)) {
        fprintf(stderr, "effdet-detect: %s\n", err.msg);
        free(config);
        return 2;
    }
    free(config);
    json_object *j = info_json(&info);
    if (o->tensors) json_object_object_add(j, "tensors", tensors_json(specs, n));
    free(specs);
    print_json(j, o->pretty);
    json_object_put(j);
    return 0;
}

/* --list-models [--tensors] [--num-classes N]: every named architecture's description
 * (and tensor list), one JSON array: a converter that matches a checkpoint against all of
 * them needs one run, not one per name. */
static int run_list_models(const options *o) {
    json_object *arr = json_object_new_array();
    for (const char *const *name = effdet_known_models(); *name; name++) {
        effdet_info info;
        effdet_error err;
        effdet_tensor_spec *specs = NULL;
        int n = 0;
        char config[160];
        snprintf(config, sizeof config, "{\"name\": \"%s\", \"num_classes\": %d}", *name,
                 o->num_classes > 0 ? o->num_classes : 90);
        if (effdet_describe_config(config, *name, &info, o->tensors ? &specs : NULL, &n, &err)) {
            fprintf(stderr, "effdet-detect: %s\n", err.msg);
            json_object_put(arr);
            return 2;
        }
        json_object *j = info_json(&info);
        if (o->tensors) json_object_object_add(j, "tensors", tensors_json(specs, n));
        free(specs);
        json_object_array_add(arr, j);
    }
    print_json(arr, o->pretty);
    json_object_put(arr);
    return 0;
}

/* ------------------------------------------------------------------ detections */

static json_object *detections_json(const effdet_model *m, const effdet_result *r) {
    json_object *arr = json_object_new_array();
    for (int i = 0; i < r->count; i++) {
        const effdet_detection *d = &r->dets[i];
        json_object *o = json_object_new_object(), *box = json_object_new_object();
        const char *label = effdet_model_label(m, d->class_id - 1);
        json_object_object_add(o, "label", json_object_new_string(label ? label : "?"));
        json_object_object_add(o, "class_id", json_object_new_int(d->class_id));
        json_object_object_add(o, "score", json_object_new_double(d->score));
        json_object_object_add(box, "x1", json_object_new_double(d->x1));
        json_object_object_add(box, "y1", json_object_new_double(d->y1));
        json_object_object_add(box, "x2", json_object_new_double(d->x2));
        json_object_object_add(box, "y2", json_object_new_double(d->y2));
        json_object_object_add(o, "box", box);
        json_object_array_add(arr, o);
    }
    return arr;
}

/* classes=person,car -> mask over 0-based class indices. */
static int build_class_mask(const effdet_model *m, const char *list, uint8_t *mask) {
    int n = effdet_model_info(m)->num_classes;
    memset(mask, 0, (size_t)n);
    char *copy = strdup(list), *save = NULL;
    int ok = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        int found = 0;
        for (int c = 0; c < n; c++) {
            const char *label = effdet_model_label(m, c);
            if (label && strcmp(label, tok) == 0) mask[c] = 1, found = 1;
        }
        if (!found) {
            fprintf(stderr, "effdet-detect: --classes: unknown label '%s'\n", tok);
            ok = -1;
        }
    }
    free(copy);
    return ok;
}

static void *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
        *len = fread(buf, 1, (size_t)st.st_size, f);
        if (*len != (size_t)st.st_size) {
            free(buf);
            buf = NULL;
        }
    } else {
        errno = S_ISDIR(st.st_mode) ? EISDIR : errno;
    }
    fclose(f);
    return buf;
}

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && n == len) ? 0 : -1;
}

static int draw_to_file(const effdet_model *m, const uint8_t *jpeg, size_t len, const effdet_result *r,
                        const char *path) {
    effdet_error err;
    effdet_image img;
    effdet_decode_opts d;
    effdet_decode_opts_default(&d);
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = -1;
    if (effdet_image_decode_jpeg(jpeg, len, &d, &img, &err)) {
        fprintf(stderr, "effdet-detect: %s\n", err.msg);
        return -1;
    }
    effdet_image_draw_detections(&img, m, r->dets, r->count);
    if (effdet_image_encode_jpeg(&img, 90, &out, &out_len, &err)) fprintf(stderr, "effdet-detect: %s\n", err.msg);
    else if (write_file(path, out, out_len)) fprintf(stderr, "effdet-detect: %s: %s\n", path, strerror(errno));
    else rc = 0;
    free(out);
    effdet_image_free(&img);
    return rc;
}

static int detect_one(effdet_context *ctx, const effdet_model *m, const options *o, const char *path) {
    size_t len = 0;
    uint8_t *jpeg = read_file(path, &len);
    if (!jpeg) {
        fprintf(stderr, "effdet-detect: %s: %s\n", path, strerror(errno ? errno : EIO));
        return -1;
    }
    effdet_decode_opts d;
    effdet_decode_opts_default(&d);
    d.allow_dct_scaling = o->fast_decode;
    effdet_result r;
    effdet_error err;
    effdet_status st = effdet_detect_jpeg(ctx, jpeg, len, &d, &o->det, &r, &err);
    if (st) {
        fprintf(stderr, "effdet-detect: %s: %s\n", path, err.msg);
        free(jpeg);
        return -1;
    }
    json_object *j = json_object_new_object(), *t = json_object_new_object();
    json_object_object_add(j, "image", json_object_new_string(path));
    json_object_object_add(j, "width", json_object_new_int(r.image_w));
    json_object_object_add(j, "height", json_object_new_int(r.image_h));
    json_object_object_add(j, "model", json_object_new_string(effdet_model_info(m)->name));
    json_object_object_add(j, "detections", detections_json(m, &r));
    json_object_object_add(t, "decode", ms_json(r.decode_ms));
    json_object_object_add(t, "preprocess", ms_json(r.preprocess_ms));
    json_object_object_add(t, "forward", ms_json(r.forward_ms));
    json_object_object_add(t, "postprocess", ms_json(r.postprocess_ms));
    json_object_object_add(j, "timings_ms", t);
    print_json(j, o->pretty);
    json_object_put(j);
    int rc = 0;
    if (o->draw_path) rc = draw_to_file(m, jpeg, len, &r, o->draw_path);
    free(jpeg);
    return rc;
}

/* ------------------------------------------------------------------ raw + dump */

static int dump_tensor(const char *dir, const char *name, const effdet_tensor *t) {
    size_t hw = (size_t)t->h * t->w, n = hw * t->c;
    float *nchw = malloc(n * sizeof(float));
    if (!nchw) return -1;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < t->c; c++) nchw[(size_t)c * hw + i] = t->data[i * t->c + c];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = write_file(path, nchw, n * sizeof(float));
    if (rc) fprintf(stderr, "effdet-detect: %s: %s\n", path, strerror(errno));
    free(nchw);
    return rc;
}

static int dump_all_tensors(effdet_context *ctx, const char *dir) {
    static const char *lv[5] = {"P3", "P4", "P5", "P6", "P7"};
    char name[64];
    effdet_tensor t;
    int rc = 0;
    for (int f = 0; f < 3; f++) {
        snprintf(name, sizeof name, "feat_%d.f32", f);
        effdet_get_tensor(ctx, EFFDET_T_FEAT, f, &t);
        rc |= dump_tensor(dir, name, &t);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "fpn_in_%s.f32", lv[3 + i]);
        effdet_get_tensor(ctx, EFFDET_T_FPN_IN, i, &t);
        rc |= dump_tensor(dir, name, &t);
    }
    static const struct {
        effdet_tensor_kind kind;
        const char *prefix;
    } outs[3] = {{EFFDET_T_FPN, "fpn"}, {EFFDET_T_CLASS, "class"}, {EFFDET_T_BOX, "box"}};
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
            snprintf(name, sizeof name, "%s_%s.f32", outs[k].prefix, lv[l]);
            effdet_get_tensor(ctx, outs[k].kind, l, &t);
            rc |= dump_tensor(dir, name, &t);
        }
    return rc;
}

static int dump_topk(effdet_context *ctx, const char *dir) {
    int k = 5000;
    float *logit = malloc(sizeof(float) * k);
    int32_t *anchor = malloc(sizeof(int32_t) * k), *cls = malloc(sizeof(int32_t) * k);
    int n = logit && anchor && cls ? effdet_topk_candidates(ctx, k, logit, anchor, cls) : -1;
    int rc = n < 0;
    char path[4096];
    if (n > 0) {
        snprintf(path, sizeof path, "%s/topk_logit.f32", dir);
        rc |= write_file(path, logit, sizeof(float) * n);
        snprintf(path, sizeof path, "%s/topk_anchor.i32", dir);
        rc |= write_file(path, anchor, sizeof(int32_t) * n);
        snprintf(path, sizeof path, "%s/topk_class.i32", dir);
        rc |= write_file(path, cls, sizeof(int32_t) * n);
    }
    free(logit), free(anchor), free(cls);
    return rc;
}

/* Rows as the reference's detections.json: x1, y1, x2, y2, score, cls (1-based). */
static json_object *reference_rows(const effdet_result *r) {
    json_object *arr = json_object_new_array();
    for (int i = 0; i < r->count; i++) {
        const effdet_detection *d = &r->dets[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "x1", json_object_new_double(d->x1));
        json_object_object_add(o, "y1", json_object_new_double(d->y1));
        json_object_object_add(o, "x2", json_object_new_double(d->x2));
        json_object_object_add(o, "y2", json_object_new_double(d->y2));
        json_object_object_add(o, "score", json_object_new_double(d->score));
        json_object_object_add(o, "cls", json_object_new_int(d->class_id));
        json_object_array_add(arr, o);
    }
    return arr;
}

static int run_raw(effdet_context *ctx, const effdet_model *m, const options *o) {
    const effdet_info *info = effdet_model_info(m);
    size_t len = 0, want = (size_t)info->input_h * info->input_w * 3 * sizeof(float);
    float *input = read_file(o->raw_input, &len);
    effdet_error err;
    if (!input) {
        fprintf(stderr, "effdet-detect: %s: %s\n", o->raw_input, strerror(errno ? errno : EIO));
        return 1;
    }
    if (len != want) {
        fprintf(stderr, "effdet-detect: %s: %zu bytes, but %s needs 1x3x%dx%d float32 (%zu bytes)\n", o->raw_input, len,
                info->name, info->input_h, info->input_w, want);
        free(input);
        return 1;
    }
    int rc = 0;
    if (effdet_forward(ctx, input, &err)) {
        fprintf(stderr, "effdet-detect: %s\n", err.msg);
        free(input);
        return 1;
    }
    free(input);
    effdet_result net, img;
    json_object *j = json_object_new_object();
    json_object_object_add(j, "model", json_object_new_string(info->name));
    if (effdet_postprocess(ctx, 0, 0, &o->det, &net, &err) == EFFDET_OK)
        json_object_object_add(j, "detections_network", reference_rows(&net));
    if (o->image_w > 0 && effdet_postprocess(ctx, o->image_w, o->image_h, &o->det, &img, &err) == EFFDET_OK)
        json_object_object_add(j, "detections_image", reference_rows(&img));
    if (o->dump_dir) {
        if (mkdir(o->dump_dir, 0755) && errno != EEXIST) {
            fprintf(stderr, "effdet-detect: %s: %s\n", o->dump_dir, strerror(errno));
            json_object_put(j);
            return 1;
        }
        rc |= dump_all_tensors(ctx, o->dump_dir);
        rc |= dump_topk(ctx, o->dump_dir);
        char path[4096];
        snprintf(path, sizeof path, "%s/detections.json", o->dump_dir);
        const char *s = json_text(j, 1);
        rc |= write_file(path, s, strlen(s));
    } else {
        print_json(j, o->pretty);
    }
    json_object_put(j);
    return rc ? 1 : 0;
}

/* --cpu: what CPUID/XGETBV report, which kernel levels this CPU can run, and the one a
 * context would pick (EFFDET_ISA applied). Exit 1 when EFFDET_ISA names a level the CPU
 * lacks or an unknown one. */
static int print_cpu(void) {
    const char *req = getenv("EFFDET_ISA");
    effdet_cpu_report r;
    effdet_error err;
    int ok = effdet_cpu_describe(req, &r, &err) == EFFDET_OK;
    json_object *j = json_object_new_object(), *feat = json_object_new_object(), *lv = json_object_new_array();
    json_object_object_add(j, "vendor", json_object_new_string(r.vendor));
    json_object_object_add(j, "brand", json_object_new_string(r.brand));
    for (int i = 0; i < r.num_features; i++)
        json_object_object_add(feat, r.features[i].name, json_object_new_boolean(r.features[i].present));
    json_object_object_add(j, "features", feat);
    for (int i = 0; i < r.num_levels; i++) json_object_array_add(lv, json_object_new_string(r.levels[i]));
    json_object_object_add(j, "supported_levels", lv);
    json_object_object_add(j, "EFFDET_ISA", req ? json_object_new_string(req) : NULL);
    json_object_object_add(j, "selected", ok ? json_object_new_string(r.selected) : NULL);
    if (!ok) json_object_object_add(j, "error", json_object_new_string(err.msg));
    puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j);
    if (!ok) fprintf(stderr, "effdet-detect: %s\n", err.msg);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--cpu") == 0) return print_cpu();
    options o;
    if (parse_args(argc, argv, &o)) return 2;
    if (o.list_models) return run_list_models(&o);
    if (o.describe_config || (o.describe && o.tensors)) return run_describe_config(&o);
    if (o.tensors) {
        fprintf(stderr, "effdet-detect: --tensors needs --describe NAME or --describe-config FILE\n");
        return 2;
    }
    if (o.describe) return run_describe(&o);
    if (!o.raw_input && optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (o.dump_dir && !o.raw_input) {
        fprintf(stderr, "effdet-detect: --dump needs --raw-input\n");
        return 2;
    }
    if (o.draw_path && argc - optind != 1) {
        fprintf(stderr, "effdet-detect: --draw takes exactly one image\n");
        return 2;
    }
    effdet_model *m = NULL;
    effdet_context *ctx = NULL;
    effdet_error err;
    uint8_t *mask = NULL;
    int rc = 2;
    effdet_load_opts lo;
    effdet_load_opts_default(&lo);
    lo.precision = o.precision;
    if (effdet_model_load_opts(o.model_path, &lo, &m, &err)) {
        fprintf(stderr, "effdet-detect: %s\n", err.msg);
        goto done;
    }
    if (effdet_context_create(m, o.threads, &ctx, &err) || (o.dump_dir && effdet_context_keep_tensors(ctx, &err))) {
        fprintf(stderr, "effdet-detect: %s\n", err.msg);
        goto done;
    }
    if (o.classes) {
        mask = malloc((size_t)effdet_model_info(m)->num_classes);
        if (!mask || build_class_mask(m, o.classes, mask)) goto done;
        o.det.class_mask = mask;
    }
    if (o.raw_input) {
        rc = run_raw(ctx, m, &o);
        goto done;
    }
    rc = 0;
    for (int i = optind; i < argc; i++)
        if (detect_one(ctx, m, &o, argv[i])) rc = 1;
done:
    free(mask);
    effdet_context_free(ctx);
    effdet_model_free(m);
    return rc;
}
