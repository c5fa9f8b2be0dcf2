/* Prometheus metrics. Counters and histograms are updated by the event-loop thread only
 * (it records each request when it sends the reply), so they need no locks. */
#ifndef EFFDETD_METRICS_H
#define EFFDETD_METRICS_H

#include "models.h"
#include "sbuf.h"

typedef enum {
    EP_DETECT,
    EP_VISION_DETECTION,
    EP_VISION_CUSTOM,
    EP_CUSTOM_LIST,
    EP_UPDATE_AVAILABLE,
    EP_HEALTHZ,
    EP_READYZ,
    EP_METRICS,
    EP_MODELS,
    EP_INDEX,
    EP_OTHER,
    EP_COUNT
} endpoint_id;

#define HIST_BUCKETS 14
#define METRIC_STATUSES 16

typedef struct {
    unsigned long long bucket[HIST_BUCKETS]; /* cumulative at export time, not here */
    unsigned long long count;
    double sum;
} histogram;

typedef struct {
    struct {
        int code[METRIC_STATUSES];
        unsigned long long n[METRIC_STATUSES];
    } requests[EP_COUNT];
    histogram queue_wait, inference, total;
    unsigned long long detections, rejected_busy, deadline_expired, client_gone;
    unsigned long long reloads_ok, reloads_failed;
} metrics;

const char *endpoint_name(endpoint_id e);
void metrics_request(metrics *m, endpoint_id e, int status);
void hist_observe(histogram *h, double seconds);
/* Append the counters and histograms in the Prometheus text format. */
void metrics_write(const metrics *m, sbuf *out);
void hist_write(const histogram *h, const char *name, const char *help, sbuf *out);
/* The gauges of one scrape, read by the loop from the queue, workers and connlimit. */
typedef struct {
    int queue_depth, queue_capacity, workers, workers_busy, ready;
    long long dropped_header, dropped_body, dropped_cap, cap_pauses, body_rejected, body_held;
} metrics_gauges;

void metrics_write_gauges(const metrics_gauges *g, sbuf *out);
/* effdetd_model_info: one sample per model of set (NULL while loading). */
void metrics_write_models(const model_set *set, sbuf *out);
/* Copy exposition text to out with the label name="value" added to every sample (value
 * must need no escaping: config_validate checks `instance`). */
void metrics_add_label(const char *text, size_t len, const char *name, const char *value, sbuf *out);

#endif
