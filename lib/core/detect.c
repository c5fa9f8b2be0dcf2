/*
 * The whole pipeline on one context: JPEG -> RGB -> letterbox -> forward ->
 * post-process. Only decoding depends on the image size (and the letterbox's resize
 * state for images far larger than the network input); everything else lives in
 * buffers the context allocated at creation.
 */
#include <string.h>

#include "core/clock.h"
#include "core/context.h"
#include "core/fpenv.h"
#include "core/status.h"
#include "image/jpeg_decode.h"
#include "image/letterbox.h"

void effdet_detect_opts_default(effdet_detect_opts *o) {
    memset(o, 0, sizeof *o);
    o->score_threshold = 0;
    o->max_detections = 100;
    o->nms = EFFDET_NMS_HARD;
    o->class_mask = NULL;
}

static effdet_status check_opts(const effdet_context *ctx, const effdet_detect_opts *o, effdet_error *err) {
    if (!(o->score_threshold >= 0 && o->score_threshold <= 1))
        return set_error(err, EFFDET_ERR_ARG, "score_threshold must be within 0..1");
    if (o->max_detections < 1 || o->max_detections > ctx->m->arch.max_detection_points)
        return set_error(err, EFFDET_ERR_ARG, "max_detections must be within 1..%d", ctx->m->arch.max_detection_points);
    if (o->nms != EFFDET_NMS_HARD && o->nms != EFFDET_NMS_SOFT) return set_error(err, EFFDET_ERR_ARG, "unknown nms kind");
    return EFFDET_OK;
}

static effdet_status postprocess_outputs(effdet_context *ctx, int image_w, int image_h, const effdet_detect_opts *o,
                                         effdet_result *out, effdet_error *err) {
    effdet_detect_opts defaults;
    if (!o) {
        effdet_detect_opts_default(&defaults);
        o = &defaults;
    }
    effdet_status st = check_opts(ctx, o, err);
    if (st) return st;
    const effdet_arch *a = &ctx->m->arch;
    double t0 = now_ms();
    head_outputs h;
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        h.cls[l] = ctx->cls[l].data;
        h.box[l] = ctx->box[l].data;
    }
    postprocess_params p = {0};
    p.topk = a->max_detection_points;
    p.out_scale = 1;
    p.score_threshold = o->score_threshold;
    p.max_detections = o->max_detections;
    p.nms = o->nms;
    p.class_mask = o->class_mask;
    p.tp = ctx->tp;
    if (image_w > 0 && image_h > 0) {
        /* effdet clips to the scaled image's extent (not the padded canvas) before NMS,
         * then maps network pixels back with img_scale = 1 / s. */
        letterbox_info lb;
        letterbox_geometry(image_w, image_h, a->image_w, a->image_h, &lb);
        p.clip = 1;
        p.clip_w = (float)image_w / lb.img_scale;
        p.clip_h = (float)image_h / lb.img_scale;
        p.out_scale = lb.img_scale;
    }
    out->dets = ctx->dets;
    out->count = postprocess(&ctx->anchors, &h, &p, ctx->pp_scratch, ctx->dets);
    out->image_w = image_w;
    out->image_h = image_h;
    out->postprocess_ms = now_ms() - t0;
    return EFFDET_OK;
}

/* In the forward pass's floating-point mode (fpenv.h), so that scores do not depend on
 * whether the caller went through effdet_detect_*() or not, nor on the caller's MXCSR. */
effdet_status effdet_postprocess(effdet_context *ctx, int image_w, int image_h, const effdet_detect_opts *o,
                                 effdet_result *out, effdet_error *err) {
    fpenv_saved fp = fpenv_enter();
    effdet_status st = postprocess_outputs(ctx, image_w, image_h, o, out, err);
    fpenv_leave(fp);
    return st;
}

/* With DCT scaling the decoder hands over a smaller image than the file's: boxes are
 * found in the decoded image and mapped back to the file's pixels here, so every caller
 * of the pipeline gets file pixels. */
static void map_to_source(const effdet_image *img, effdet_result *out) {
    if (img->source_width <= 0 || img->source_height <= 0 ||
        (img->source_width == img->width && img->source_height == img->height))
        return;
    float sx = (float)img->source_width / img->width, sy = (float)img->source_height / img->height;
    for (int i = 0; i < out->count; i++) {
        out->dets[i].x1 *= sx, out->dets[i].x2 *= sx;
        out->dets[i].y1 *= sy, out->dets[i].y2 *= sy;
    }
    out->image_w = img->source_width;
    out->image_h = img->source_height;
}

static effdet_status detect_image(effdet_context *ctx, const effdet_image *img, const effdet_detect_opts *o,
                                  effdet_result *out, effdet_error *err) {
    const effdet_arch *a = &ctx->m->arch;
    effdet_status st;
    double t0 = now_ms();
    letterbox_info lb;
    /* The canvas goes straight into the input tensor: no uint8 copy of it is kept. */
    if ((st = letterbox_normalize_nhwc(img, a->image_w, a->image_h, ctx->input.data, ctx->letterbox_scratch,
                                       ctx->letterbox_scratch_bytes, ctx->tp, &lb, err)))
        return st;
    double t1 = now_ms();
    if ((st = forward_run(ctx, err))) return st;
    double t2 = now_ms();
    if ((st = postprocess_outputs(ctx, img->width, img->height, o, out, err))) return st;
    map_to_source(img, out);
    out->preprocess_ms = t1 - t0;
    out->forward_ms = t2 - t1;
    return EFFDET_OK;
}

/* The whole detection, letterbox included, in the kernels' floating-point mode. */
effdet_status effdet_detect_image(effdet_context *ctx, const effdet_image *img, const effdet_detect_opts *o,
                                  effdet_result *out, effdet_error *err) {
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb || img->width < 1 || img->height < 1) return set_error(err, EFFDET_ERR_ARG, "empty image");
    fpenv_saved fp = fpenv_enter();
    effdet_status st = detect_image(ctx, img, o, out, err);
    fpenv_leave(fp);
    return st;
}

effdet_status effdet_context_decode_jpeg(effdet_context *ctx, const uint8_t *data, size_t len,
                                         const effdet_decode_opts *opts, effdet_image *out, effdet_error *err) {
    if (!ctx) return set_error(err, EFFDET_ERR_ARG, "effdet_context_decode_jpeg: NULL context");
    return image_decode_jpeg_pool(data, len, opts, ctx->tp, ctx->jpeg_scratch, out, err);
}

effdet_status effdet_detect_jpeg(effdet_context *ctx, const uint8_t *jpeg, size_t len, const effdet_decode_opts *dopts,
                                 const effdet_detect_opts *o, effdet_result *out, effdet_error *err) {
    effdet_decode_opts d;
    effdet_decode_opts_default(&d);
    if (dopts) d = *dopts;
    d.target_w = ctx->m->arch.image_w;
    d.target_h = ctx->m->arch.image_h;
    memset(out, 0, sizeof *out);
    double t0 = now_ms();
    effdet_image img;
    /* on the context's threads: large files decode in bands or segments (jpeg_bands.c, jpeg_split.c) */
    effdet_status st = image_decode_jpeg_pool(jpeg, len, &d, ctx->tp, ctx->jpeg_scratch, &img, err);
    if (st) return st;
    double decode_ms = now_ms() - t0;
    st = effdet_detect_image(ctx, &img, o, out, err);
    out->decode_ms = decode_ms;
    effdet_image_free(&img);
    return st;
}

int effdet_topk_candidates(effdet_context *ctx, int k, float *logit, int32_t *anchor, int32_t *cls) {
    if (!ctx || !logit || !anchor || !cls || k < 1) return -1;
    if (k > ctx->m->arch.max_detection_points) k = ctx->m->arch.max_detection_points;
    head_outputs h;
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        h.cls[l] = ctx->cls[l].data;
        h.box[l] = ctx->box[l].data;
    }
    /* The detections buffer holds max_detection_points rows of 24 bytes; topk items are
     * 12 bytes, so it doubles as the output here (it is rewritten by every detect). */
    topk_item *items = (topk_item *)ctx->dets;
    int n = topk_select_mt(&ctx->anchors, &h, k, NULL, items, ctx->pp_scratch, ctx->tp);
    for (int i = 0; i < n; i++) {
        logit[i] = items[i].logit;
        anchor[i] = items[i].anchor;
        cls[i] = items[i].cls;
    }
    return n;
}
