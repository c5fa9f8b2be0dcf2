/* Prometheus text exposition (version 0.0.4): counters end in _total, histograms export
 * cumulative _bucket{le="..."} series plus _sum and _count. */
#include "metrics.h"

#include <string.h>

static const double bucket_le[HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,  0.5,    1,     2.5,  5,     10,   30};

const char *endpoint_name(endpoint_id e) {
    static const char *names[EP_COUNT] = {"/detect",
                                          "/v1/vision/detection",
                                          "/v1/vision/custom",
                                          "/v1/vision/custom/list",
                                          "/v1/status/updateavailable",
                                          "/healthz",
                                          "/readyz",
                                          "/metrics",
                                          "/v1/models",
                                          "/",
                                          "other"};
    return (unsigned)e < EP_COUNT ? names[e] : "other";
}

void metrics_request(metrics *m, endpoint_id e, int status) {
    if ((unsigned)e >= EP_COUNT) e = EP_OTHER;
    for (int i = 0; i < METRIC_STATUSES; i++) {
        if (m->requests[e].code[i] == status || m->requests[e].code[i] == 0) {
            m->requests[e].code[i] = status;
            m->requests[e].n[i]++;
            return;
        }
    }
    /* More distinct statuses than slots: count them under the last slot's code rather
     * than lose the request. 16 slots cover every status effdetd sends. */
    m->requests[e].n[METRIC_STATUSES - 1]++;
}

void hist_observe(histogram *h, double seconds) {
    for (int i = 0; i < HIST_BUCKETS; i++) {
        if (seconds <= bucket_le[i]) {
            h->bucket[i]++;
            break;
        }
    }
    h->count++;
    h->sum += seconds;
}

void hist_write(const histogram *h, const char *name, const char *help, sbuf *out) {
    sb_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        sb_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[i], cum);
    }
    sb_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, h->count, name, h->sum,
              name, h->count);
}

static void counter(sbuf *out, const char *name, const char *help, unsigned long long v) {
    sb_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, v);
}

void metrics_write(const metrics *m, sbuf *out) {
    sb_puts(out, "# HELP effdetd_requests_total HTTP requests answered, by endpoint and status.\n"
                 "# TYPE effdetd_requests_total counter\n");
    for (int e = 0; e < EP_COUNT; e++)
        for (int i = 0; i < METRIC_STATUSES && m->requests[e].code[i]; i++)
            sb_printf(out, "effdetd_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", endpoint_name(e),
                      m->requests[e].code[i], m->requests[e].n[i]);
    hist_write(&m->queue_wait, "effdetd_queue_wait_seconds", "Time jobs waited in the queue.", out);
    hist_write(&m->inference, "effdetd_inference_seconds", "Decode + forward + post-process time per job.",
               out);
    hist_write(&m->total, "effdetd_request_duration_seconds",
               "Detection requests: from the full request to the reply.", out);
    counter(out, "effdetd_detections_total", "Detections returned.", m->detections);
    counter(out, "effdetd_rejected_busy_total", "Requests refused with 503 because the queue was full.",
            m->rejected_busy);
    counter(out, "effdetd_deadline_expired_total", "Jobs not run because they waited past the deadline.",
            m->deadline_expired);
    counter(out, "effdetd_client_disconnects_total", "Jobs whose client went away before the reply.",
            m->client_gone);
    sb_printf(out,
              "# HELP effdetd_reloads_total SIGHUP reloads by result.\n# TYPE effdetd_reloads_total counter\n"
              "effdetd_reloads_total{result=\"ok\"} %llu\neffdetd_reloads_total{result=\"failed\"} %llu\n",
              m->reloads_ok, m->reloads_failed);
}

/* Every sample line gets name="value" as its first label; comments pass unchanged. One
 * pass over the finished text keeps each writer above free of the label. */
void metrics_add_label(const char *text, size_t len, const char *name, const char *value, sbuf *out) {
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) + 1 : len - pos;
        pos += n;
        if (line[0] == '#' || line[0] == '\n') {
            sb_put(out, line, n);
            continue;
        }
        size_t name_len = strcspn(line, "{ ");
        if (name_len >= n) name_len = n;
        sb_put(out, line, name_len);
        if (name_len < n && line[name_len] == '{') {
            sb_printf(out, "{%s=\"%s\"%s", name, value, line[name_len + 1] == '}' ? "" : ",");
            sb_put(out, line + name_len + 1, n - name_len - 1);
        } else {
            sb_printf(out, "{%s=\"%s\"}", name, value);
            sb_put(out, line + name_len, n - name_len);
        }
    }
}

void metrics_write_gauges(const metrics_gauges *g, sbuf *out) {
    sb_printf(out,
              "# HELP effdetd_queue_depth Jobs waiting for a worker.\n# TYPE effdetd_queue_depth gauge\n"
              "effdetd_queue_depth %d\n"
              "# HELP effdetd_queue_capacity Queue size.\n# TYPE effdetd_queue_capacity gauge\n"
              "effdetd_queue_capacity %d\n"
              "# HELP effdetd_workers Worker threads.\n# TYPE effdetd_workers gauge\neffdetd_workers %d\n"
              "# HELP effdetd_workers_busy Workers running a job.\n# TYPE effdetd_workers_busy gauge\n"
              "effdetd_workers_busy %d\n"
              "# HELP effdetd_ready 1 once models are loaded and warmed up.\n# TYPE effdetd_ready gauge\n"
              "effdetd_ready %d\n"
              "# HELP effdetd_build_info Version.\n# TYPE effdetd_build_info gauge\n"
              "effdetd_build_info{version=\"%s\"} 1\n",
              g->queue_depth, g->queue_capacity, g->workers, g->workers_busy, g->ready, EFFDET_VERSION);
    sb_printf(
        out,
        "# HELP effdetd_connections_dropped_total Connections closed by effdetd: request line + headers "
        "too slow (header_timeout_s), body too slow (min_body_rate), or to make room at max_connections."
        "\n# TYPE effdetd_connections_dropped_total counter\n"
        "effdetd_connections_dropped_total{reason=\"header_timeout\"} %lld\n"
        "effdetd_connections_dropped_total{reason=\"body_rate\"} %lld\n"
        "effdetd_connections_dropped_total{reason=\"cap\"} %lld\n"
        "# HELP effdetd_connection_cap_pauses_total Times every connection was busy at max_connections "
        "and new clients waited in the backlog.\n# TYPE effdetd_connection_cap_pauses_total counter\n"
        "effdetd_connection_cap_pauses_total %lld\n"
        "# HELP effdetd_body_budget_rejected_total Requests answered 503 because body_budget_bytes was "
        "spent.\n# TYPE effdetd_body_budget_rejected_total counter\neffdetd_body_budget_rejected_total %lld\n"
        "# HELP effdetd_body_bytes_held Request-body bytes reserved now (of body_budget_bytes).\n"
        "# TYPE effdetd_body_bytes_held gauge\neffdetd_body_bytes_held %lld\n",
        g->dropped_header, g->dropped_body, g->dropped_cap, g->cap_pauses, g->body_rejected, g->body_held);
}

void metrics_write_models(const model_set *set, sbuf *out) {
    sb_puts(out, "# HELP effdetd_model_info Loaded models.\n# TYPE effdetd_model_info gauge\n");
    for (int i = 0; set && i < set->count; i++) {
        const effdet_info *inf = set->models[i]->info;
        sb_puts(out, "effdetd_model_info{name=");
        sb_json_str(out, set->models[i]->name); /* JSON escaping is valid label escaping */
        sb_puts(out, ",architecture=");
        sb_json_str(out, inf->name);
        sb_printf(out, ",input=\"%dx%d\",classes=\"%d\",params=\"%lld\",default=\"%s\"} 1\n", inf->input_w,
                  inf->input_h, inf->num_classes, inf->params, i == set->default_index ? "true" : "false");
    }
}
