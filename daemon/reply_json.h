/* Reply bodies (JSON, and the X-Detections header): pure formatting into an sbuf, on
 * whichever thread builds the reply (workers for detections, the loop for the rest). */
#ifndef EFFDETD_REPLY_JSON_H
#define EFFDETD_REPLY_JSON_H

#include "effdet.h"
#include "job.h"
#include "models.h"
#include "sbuf.h"

/* {"error":{"code","message"}}, or DeepStack's {"success":false,"error","code"}. */
void json_error_body(sbuf *b, job_kind kind, int status, const char *code, const char *message);
/* POST /detect's body; the DeepStack / CodeProject.AI body of the /v1/vision routes. */
void write_detect_json(const job *j, const effdet_result *r, const effdet_detection *d, int n, sbuf *b);
void write_compat_json(const job *j, const effdet_result *r, const effdet_detection *d, int n, sbuf *b);
/* The X-Detections header value of a rendered reply (malloc'd; NULL when out of memory). */
char *detections_header(const job *j, const effdet_detection *d, int n);
/* GET /v1/models (set may be NULL while loading); DeepStack's custom model list. */
void write_models_json(sbuf *b, const char *instance, const model_set *set);
void write_custom_list_json(sbuf *b, const model_set *set);

#endif
