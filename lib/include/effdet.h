/*
 * libeffdet — EfficientDet (D0–D7) object detection on the CPU.
 *
 * Lifecycle
 *   effdet_model_load()      read a .safetensors file (mmapped while loading), build the
 *                            architecture from its metadata, fold BatchNorm, repack
 *                            weights into the model's own memory. Immutable.
 *   effdet_context_create()  per-thread working state: one arena sized at creation
 *                            plus a small thread pool. A forward pass allocates nothing.
 *   effdet_forward()         raw network: NCHW float input -> class logits / box deltas.
 *   effdet_detect_*()        the whole pipeline: JPEG -> letterbox -> forward -> boxes.
 *
 * Thread-safety contract
 *   - An effdet_model is read-only after effdet_model_load() returns; any number of
 *     contexts on any number of threads may share it. Free it only after every context
 *     created from it has been freed.
 *   - An effdet_context must be used by one thread at a time (it owns scratch memory).
 *     Use one context per worker thread.
 *   - The library keeps no global mutable state of its own. It does put OpenBLAS in
 *     single-threaded mode (openblas_set_num_threads(1)) when a context is created:
 *     each context parallelises GEMMs itself across its own threads, so that several
 *     contexts can run side by side without oversubscribing the CPU.
 *
 * Floating-point environment (x86)
 *   The kernels compute with subnormal floats flushed to zero (MXCSR FTZ and DAZ): a
 *   subnormal costs a ~100x slower microcode assist, and dark or noisy frames produce
 *   many of them, while the network's results never depend on values below 1.2e-38.
 *   They also round to nearest with every FP exception masked, whatever the caller set,
 *   so results never depend on the host's mode. The context's own pool threads run in
 *   that mode for their whole life. On the
 *   calling thread, effdet_forward(), effdet_detect_image(), effdet_detect_jpeg() and
 *   effdet_postprocess() switch it on for the duration of the call (a detection's
 *   letterbox included) and restore the
 *   caller's MXCSR (modes and exception flags) before returning; the library never
 *   leaves the caller's floating-point environment changed.
 *
 * Verification and profiling hooks (tensor views, top-k candidates, per-op timing, the
 * CPU report) are in effdet_debug.h: they expose internals and may change.
 *
 * Errors
 *   Every fallible function returns an effdet_status and, when `err` is not NULL,
 *   writes a one-line message naming the file, tensor, field or parameter at fault.
 */
#ifndef EFFDET_H
#define EFFDET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EFFDET_VERSION "0.1.0"

typedef enum {
    EFFDET_OK = 0,
    EFFDET_ERR_IO,        /* file cannot be opened / read / mapped */
    EFFDET_ERR_FORMAT,    /* malformed safetensors, metadata, or tensor set */
    EFFDET_ERR_ARG,       /* invalid argument from the caller */
    EFFDET_ERR_NOMEM,     /* allocation failed */
    EFFDET_ERR_IMAGE,     /* image cannot be decoded (corrupt, truncated, unsupported) */
    EFFDET_ERR_TOO_LARGE, /* image exceeds the configured pixel limit */
    EFFDET_ERR_INTERNAL,
    EFFDET_ERR_UNSUPPORTED, /* this CPU (or the forced EFFDET_ISA level) lacks a feature asked for */
} effdet_status;

typedef struct {
    char msg[512];
} effdet_error;

/* Short, stable name of a status ("io", "format", "image", ...) (lib/core/status.c). */
const char *effdet_status_name(effdet_status s);

/* The monotonic clock, in milliseconds, that effdet_result's *_ms timings are read from
 * (CLOCK_MONOTONIC): for callers that time around the library on the same scale. */
double effdet_now_ms(void); /* lib/core/clock.c */

/* ---------------------------------------------- model (lib/model/: model.c, arch.c) */

#define EFFDET_NUM_LEVELS 5 /* P3..P7 */

typedef struct effdet_model effdet_model;

/* Arithmetic of the 1x1 convolutions (the GEMMs, most of the work).
 *   FP32  float32 throughout: the default, and the mode the reference-parity tests hold.
 *   BF16  1x1 conv weights stored as bfloat16 at load, activations rounded to bfloat16
 *         (to nearest even) at each 1x1 conv's input, float32 sums, bias and activation;
 *         everything else (stem conv, depthwise, SE, fusion, pooling) stays float32.
 *         Needs AVX512_BF16 (and the avx512 kernel level): refused elsewhere. */
typedef enum { EFFDET_PRECISION_FP32 = 0, EFFDET_PRECISION_BF16 = 1 } effdet_precision;

typedef struct {
    char name[64];          /* e.g. "tf_efficientdet_d0" or a custom model's name */
    char backbone[64];      /* e.g. "tf_efficientnet_b0" */
    int input_h, input_w;   /* network input size */
    int num_classes;
    int fpn_channels, fpn_repeats, head_repeats;
    int num_anchors;        /* per location: num_scales * aspect ratios (9) */
    int min_level, max_level;
    int level_h[EFFDET_NUM_LEVELS], level_w[EFFDET_NUM_LEVELS];
    int feature_channels[3]; /* backbone P3, P4, P5 channels */
    long long params;       /* trainable parameters (BN running stats excluded) */
    size_t arena_bytes;     /* scratch memory each context needs */
    effdet_precision precision; /* what the model was loaded with (effdet_load_opts) */
} effdet_info;

/* "fp32" or "bf16" (NULL for a value out of range). */
const char *effdet_precision_name(effdet_precision p);
/* Parse "fp32" / "bf16"; anything else is EFFDET_ERR_ARG with a message naming the value. */
effdet_status effdet_precision_parse(const char *name, effdet_precision *out, effdet_error *err);
/* EFFDET_OK when contexts created now can run precision p: for BF16, this CPU has
 * AVX512_BF16 and the kernel level (best, or EFFDET_ISA's) is avx512. Otherwise
 * EFFDET_ERR_UNSUPPORTED (or EFFDET_ISA's own error) and a one-line message naming the
 * missing feature. */
effdet_status effdet_precision_check(effdet_precision p, effdet_error *err);

typedef struct {
    effdet_precision precision; /* default FP32 */
} effdet_load_opts;

/* Fill o with the defaults; set the fields you need afterwards. */
void effdet_load_opts_default(effdet_load_opts *o);

/* Load weights (safetensors). The file is mmapped only while loading: every tensor is
 * copied into the model's own buffers (BatchNorm folded, repacked) and the file is
 * closed before this returns, so replacing or rewriting it later does not affect the
 * loaded model. */
effdet_status effdet_model_load(const char *path, effdet_model **out, effdet_error *err);
/* The same with options (opts NULL = the defaults, i.e. effdet_model_load). A BF16 model
 * also keeps its 1x1 weights prepacked as bfloat16; loading one where
 * effdet_precision_check() fails returns that check's status and message. */
effdet_status effdet_model_load_opts(const char *path, const effdet_load_opts *opts, effdet_model **out,
                                     effdet_error *err);
void effdet_model_free(effdet_model *m);
const effdet_info *effdet_model_info(const effdet_model *m);
/* Class label for a 0-based class index; NULL when out of range. */
const char *effdet_model_label(const effdet_model *m, int cls);

/* Architecture of a named model without weights (num_classes <= 0 means the default
 * of 90). Fills `out`, including the parameter count. */
effdet_status effdet_describe(const char *name, int num_classes, effdet_info *out, effdet_error *err);
/* The named architectures effdet_describe() knows, NULL-terminated. */
const char *const *effdet_known_models(void);

/* ----------------------------------------------------- context (lib/core/context.c) */

typedef struct effdet_context effdet_context;

/* threads: how many threads this context may use (>= 1). The context computes in the
 * model's precision (effdet_load_opts); a BF16 model on a level or CPU that cannot run it
 * (e.g. EFFDET_ISA=avx2) fails here with effdet_precision_check()'s status and message.
 * The context runs the compute kernels built for the best instruction-set level this
 * CPU (and OS) supports: "avx512" (x86-64-v4), "avx2" (x86-64-v3, AVX2 + FMA) or
 * "baseline" (x86-64-v2). The environment variable EFFDET_ISA=baseline|avx2|avx512
 * forces a level; a level the CPU lacks, or an unknown name, makes this call fail
 * with EFFDET_ERR_ARG and a message naming EFFDET_ISA. */
effdet_status effdet_context_create(const effdet_model *m, int threads, effdet_context **out,
                                    effdet_error *err);
void effdet_context_free(effdet_context *ctx);
/* The kernel level the context runs: "baseline", "avx2" or "avx512". */
const char *effdet_context_isa(const effdet_context *ctx);

/* The 1x1 kernel a bf16 model's context runs: "amx" (AMX tiles, TDPBF16PS) or
 * "avx512_bf16" (vdpbf16ps); NULL for an fp32 model. Both compute the same products
 * and sum them in fp32. AMX runs where the CPU has AMX-BF16, Linux grants the process
 * the tile state and a self-test at the first bf16 context agrees with vdpbf16ps, unless
 * EFFDET_AMX=0. With "avx512_bf16", *why_not_amx (if why_not_amx is not NULL) is the
 * reason in a sentence. */
const char *effdet_context_bf16_kernel(const effdet_context *ctx, const char **why_not_amx);

/* ----------------------------------------------------- forward (lib/core/forward.c) */

/* Run the network on an NCHW float32 input of exactly info.input_h x info.input_w x 3
 * (already letterboxed and normalised). Results stay valid until the next call; read them
 * with effdet_postprocess() (or effdet_debug.h's effdet_get_tensor()). */
effdet_status effdet_forward(effdet_context *ctx, const float *input_nchw, effdet_error *err);

/* --------------------------------------------------- detections (lib/core/detect.c) */

typedef struct effdet_detection {
    float x1, y1, x2, y2; /* pixels of the original image (or network input, see below) */
    float score;          /* sigmoid of the logit */
    int class_id;         /* 1-based class id (COCO: 1 person .. 90 toothbrush) */
} effdet_detection;

typedef enum { EFFDET_NMS_HARD = 0, EFFDET_NMS_SOFT = 1 } effdet_nms_kind;

typedef struct {
    float score_threshold;   /* keep detections with score >= this (default 0: none dropped) */
    int max_detections;      /* default 100 */
    effdet_nms_kind nms;     /* default hard (IoU > 0.5); soft = gaussian, sigma 0.5 */
    const uint8_t *class_mask; /* optional: num_classes bytes, non-zero = keep that class
                                  (0-based index); NULL keeps all */
} effdet_detect_opts;

/* Fill o with the defaults above; set the fields you need afterwards. */
void effdet_detect_opts_default(effdet_detect_opts *o);

/* --------------------------------------- images (lib/image/: jpeg_decode.c, draw.c) */

/* An 8-bit RGB image, HWC, owned by the library (free with effdet_image_free). */
typedef struct {
    uint8_t *rgb;
    int width, height;
    int source_width, source_height; /* the JPEG's own size: differs from width/height when
                                        the decoder used DCT scaling; 0 = same */
} effdet_image;

typedef struct {
    long long max_pixels; /* refuse larger images before allocating; 0 = default (100 M) */
    int allow_dct_scaling; /* let libjpeg downscale by 1/2..1/8 when the image is >= 2x the
                              target on both axes (faster; not bit-exact with the reference) */
    int target_w, target_h; /* network input size, used to choose the DCT scale */
} effdet_decode_opts;

/* Fill o with the defaults (no pixel limit beyond the default, no DCT scaling); set the
 * fields you need afterwards. Use it rather than an initialiser list, so that a field
 * added later gets its default. */
void effdet_decode_opts_default(effdet_decode_opts *o);

effdet_status effdet_image_decode_jpeg(const uint8_t *data, size_t len, const effdet_decode_opts *opts,
                                       effdet_image *out, effdet_error *err);
/* The same decode on ctx's threads: the same pixels and errors, but a large file is
 * decoded in segments, one per thread (by restart intervals where it has markers,
 * speculatively where not), and other files with restart markers in bands, where that
 * is bit-exact (docs/images.md).
 * opts as above (target_w/h are not taken from ctx: set them, or DCT scaling has no target). */
effdet_status effdet_context_decode_jpeg(effdet_context *ctx, const uint8_t *data, size_t len,
                                         const effdet_decode_opts *opts, effdet_image *out, effdet_error *err);
/* Image size from the JPEG header alone (cheap; no pixel decoding). */
effdet_status effdet_image_probe_jpeg(const uint8_t *data, size_t len, int *width, int *height,
                                      effdet_error *err);
void effdet_image_free(effdet_image *img);

/* Draw boxes with "label score" captions (built-in bitmap font) onto img, in place.
 * Labels come from the model's label map. */
void effdet_image_draw_detections(effdet_image *img, const effdet_model *m, const effdet_detection *dets,
                                  int count);

/* Encode as baseline JPEG (quality 1..100). *out is malloc'd; release it with free(). */
effdet_status effdet_image_encode_jpeg(const effdet_image *img, int quality, uint8_t **out, size_t *len,
                                       effdet_error *err);

/* ----------------------------------------------------- pipeline (lib/core/detect.c) */

typedef struct {
    effdet_detection *dets; /* sorted by score, highest first; points into the context,
                               valid until its next call */
    int count;
    int image_w, image_h;   /* original image size */
    double decode_ms, preprocess_ms, forward_ms, postprocess_ms;
} effdet_result;

/* Full pipeline on an already decoded image: letterbox, forward, post-process; boxes in
 * original-image pixels, clipped to the image before NMS (as the reference does). For an
 * image decoded with DCT scaling (source_width/height set and larger), boxes and
 * image_w/h are in the source file's pixels. */
effdet_status effdet_detect_image(effdet_context *ctx, const effdet_image *img, const effdet_detect_opts *o,
                                  effdet_result *out, effdet_error *err);

/* Full pipeline from JPEG bytes. */
effdet_status effdet_detect_jpeg(effdet_context *ctx, const uint8_t *jpeg, size_t len,
                                 const effdet_decode_opts *dopts, const effdet_detect_opts *o,
                                 effdet_result *out, effdet_error *err);

/* Post-process the outputs of the last effdet_forward(). When image_w/h > 0 boxes are
 * clipped to the scaled image before NMS and returned in original pixels
 * (img_scale = the letterbox scale); otherwise they are in network-input pixels. */
effdet_status effdet_postprocess(effdet_context *ctx, int image_w, int image_h, const effdet_detect_opts *o,
                                 effdet_result *out, effdet_error *err);

/* -------------------------------------------------- model files (lib/model/model.c) */

/* One tensor a weights file must hold: effdet's name and the exact shape. */
#define EFFDET_SPEC_MAX_DIMS 4
typedef struct {
    char name[128];
    int ndim;
    int64_t shape[EFFDET_SPEC_MAX_DIMS];
} effdet_tensor_spec;

/* The architecture a weights file's __metadata__.config describes (a JSON object: a
 * known name and/or custom fields, as effdet_model_load reads it), without weights:
 * fills `info` (arena_bytes 0) and, when `tensors` is not NULL, every tensor the loader
 * asks for, in its order (*tensors is malloc'd: release it with free()). A file loads
 * only if it holds exactly these tensors. `where` names the config in messages. */
effdet_status effdet_describe_config(const char *config_json, const char *where, effdet_info *info,
                                     effdet_tensor_spec **tensors, int *count, effdet_error *err);

#ifdef __cplusplus
}
#endif
#endif
