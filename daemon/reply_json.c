#include "reply_json.h"

#include <math.h>
#include <stdio.h>

void json_error_body(sbuf *b, job_kind kind, int status, const char *code, const char *message) {
    if (kind == JOB_COMPAT) {
        /* DeepStack / CodeProject.AI clients read `success` and `error`. */
        sb_puts(b, "{\"success\":false,\"error\":");
        sb_json_str(b, message);
        sb_printf(b, ",\"code\":%d}", status);
    } else {
        sb_puts(b, "{\"error\":{\"code\":");
        sb_json_str(b, code);
        sb_puts(b, ",\"message\":");
        sb_json_str(b, message);
        sb_puts(b, "}}");
    }
}

/* lib names every class ("class%d" when the model has no labels); ids come from the
 * engine's detections, so they are in range. */
static const char *label_of(const model_entry *m, int class_id) {
    return effdet_model_label(m->model, class_id - 1);
}

static double clampd(double v, double lo, double hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

void write_detect_json(const job *j, const effdet_result *r, const effdet_detection *d, int n, sbuf *b) {
    sb_puts(b, "{\"model\":");
    sb_json_str(b, j->model->name);
    sb_printf(b, ",\"image\":{\"width\":%d,\"height\":%d},\"count\":%d,\"detections\":[", r->image_w,
              r->image_h, n);
    for (int i = 0; i < n; i++) {
        sb_puts(b, i ? ",{\"label\":" : "{\"label\":");
        sb_json_str(b, label_of(j->model, d[i].class_id));
        sb_printf(b, ",\"class_id\":%d,\"score\":", d[i].class_id);
        sb_json_num(b, d[i].score, 6);
        sb_printf(b, ",\"box\":{\"x1\":%.2f,\"y1\":%.2f,\"x2\":%.2f,\"y2\":%.2f}}", d[i].x1, d[i].y1, d[i].x2,
                  d[i].y2);
    }
    sb_printf(b,
              "],\"timings_ms\":{\"queue\":%.3f,\"decode\":%.3f,\"inference\":%.3f,\"postprocess\":%.3f,"
              "\"total\":%.3f}}",
              j->t_start_ms - j->t_arrive_ms, j->decode_ms, j->infer_ms, j->post_ms,
              j->t_end_ms - j->t_arrive_ms);
}

/* DeepStack / CodeProject.AI shape: integer pixel boxes, confidence 0..1, sorted by
 * confidence, at most compat_max predictions. */
void write_compat_json(const job *j, const effdet_result *r, const effdet_detection *d, int n, sbuf *b) {
    sb_puts(b, "{\"success\":true,\"message\":");
    if (n == 0)
        sb_json_str(b, "No objects found");
    else {
        sbuf m;
        sb_init(&m);
        sb_puts(&m, "Found ");
        for (int i = 0; i < n && i < 5; i++) {
            if (i) sb_puts(&m, ", ");
            sb_puts(&m, label_of(j->model, d[i].class_id));
        }
        if (n > 5) sb_puts(&m, "...");
        sb_json_str(b, m.oom ? "Found objects" : m.data);
        sb_free(&m);
    }
    sb_printf(b, ",\"count\":%d,\"predictions\":[", n);
    for (int i = 0; i < n; i++) {
        sb_puts(b, i ? ",{\"label\":" : "{\"label\":");
        sb_json_str(b, label_of(j->model, d[i].class_id));
        sb_puts(b, ",\"confidence\":");
        sb_json_num(b, d[i].score, 6);
        sb_printf(b, ",\"x_min\":%ld,\"y_min\":%ld,\"x_max\":%ld,\"y_max\":%ld}",
                  lround(clampd(d[i].x1, 0, r->image_w)), lround(clampd(d[i].y1, 0, r->image_h)),
                  lround(clampd(d[i].x2, 0, r->image_w)), lround(clampd(d[i].y2, 0, r->image_h)));
    }
    double infer = j->decode_ms + j->infer_ms + j->post_ms, process = j->t_end_ms - j->t_arrive_ms;
    sb_printf(b,
              "],\"duration\":%ld,\"inferenceMs\":%ld,\"processMs\":%ld,\"analysisRoundTripMs\":%ld,"
              "\"moduleId\":\"effdetd\",\"moduleName\":\"effdetd\",\"command\":\"detect\",\"code\":200}",
              lround(infer), lround(j->infer_ms), lround(process), lround(process));
}

/* X-Detections header of a rendered reply: compact JSON, capped so the header stays
 * well under common client header limits. */
char *detections_header(const job *j, const effdet_detection *d, int n) {
    enum { MAX_IN_HEADER = 50 };
    sbuf b;
    sb_init(&b);
    sb_printf(&b, "{\"model\":");
    sb_json_str(&b, j->model->name);
    sb_printf(&b, ",\"count\":%d,\"detections\":[", n);
    for (int i = 0; i < n && i < MAX_IN_HEADER; i++) {
        sb_puts(&b, i ? ",{\"label\":" : "{\"label\":");
        sb_json_str(&b, label_of(j->model, d[i].class_id));
        sb_printf(&b, ",\"score\":%.4f,\"box\":[%.1f,%.1f,%.1f,%.1f]}", d[i].score, d[i].x1, d[i].y1, d[i].x2,
                  d[i].y2);
    }
    sb_printf(&b, "],\"truncated\":%s}", n > MAX_IN_HEADER ? "true" : "false");
    if (b.oom) sb_free(&b);
    return b.data;
}

void write_models_json(sbuf *b, const char *instance, const model_set *set) {
    sb_puts(b, "{\"instance\":");
    sb_json_str(b, instance);
    sb_puts(b, ",\"default\":");
    if (set)
        sb_json_str(b, set->models[set->default_index]->name);
    else
        sb_puts(b, "null");
    sb_puts(b, ",\"models\":[");
    for (int i = 0; set && i < set->count; i++) {
        const model_entry *m = set->models[i];
        const effdet_info *inf = m->info;
        sb_puts(b, i ? ",{\"name\":" : "{\"name\":");
        sb_json_str(b, m->name);
        sb_puts(b, ",\"architecture\":");
        sb_json_str(b, inf->name);
        sb_puts(b, ",\"backbone\":");
        sb_json_str(b, inf->backbone);
        sb_printf(b,
                  ",\"input\":{\"width\":%d,\"height\":%d},\"num_classes\":%d,\"params\":%lld,"
                  "\"precision\":\"%s\",\"classes\":[",
                  inf->input_w, inf->input_h, inf->num_classes, inf->params,
                  effdet_precision_name(inf->precision));
        for (int c = 0; c < inf->num_classes; c++) {
            if (c) sb_puts(b, ",");
            sb_json_str(b, effdet_model_label(m->model, c));
        }
        sb_printf(b, "],\"default\":%s}", i == set->default_index ? "true" : "false");
    }
    sb_puts(b, "]}");
}

void write_custom_list_json(sbuf *b, const model_set *set) {
    sb_puts(b, "{\"success\":true,\"models\":[");
    for (int i = 0; set && i < set->count; i++) {
        if (i) sb_puts(b, ",");
        sb_json_str(b, set->models[i]->name);
    }
    sb_printf(b, "],\"count\":%d,\"moduleId\":\"effdetd\",\"command\":\"list\",\"code\":200}",
              set ? set->count : 0);
}
