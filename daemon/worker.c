/* Worker threads: take a job from the queue, decode + detect on this worker's engine
 * context for the job's model, build the reply body, hand the job back to the loop.
 * A worker never touches the evhttp request: the loop owns it. */
#include "worker.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "errf.h"
#include "reply_json.h"
#include "server.h"

/* An engine error as the job's reply: the status and code its kind deserves. */
static void job_fail_engine(job *j, effdet_status st, const effdet_error *e) {
    reject r;
    const char *msg = e->msg[0] ? e->msg : effdet_status_name(st);
    if (st == EFFDET_ERR_IMAGE)
        reject_with(&r, 400, "invalid_image", "%s", msg);
    else if (st == EFFDET_ERR_TOO_LARGE)
        reject_with(&r, 413, "image_too_large", "%s", msg);
    else if (st == EFFDET_ERR_NOMEM)
        reject_with(&r, 503, "out_of_memory", "%s", msg);
    else
        reject_with(&r, 500, "internal", "%s", msg);
    job_fail(j, &r);
}

/* Contexts before the models they reference: a model must outlive its contexts. */
static void free_contexts(ctx_entry *c, int n) {
    for (int i = 0; i < n; i++) {
        effdet_context_free(c[i].ctx);
        model_entry_unref(c[i].model);
    }
}

static int ctx_reserve(worker *w, int extra) {
    if (w->nctx + extra <= w->ctx_cap) return 0;
    int cap = w->ctx_cap ? w->ctx_cap : 4;
    while (cap < w->nctx + extra) cap *= 2;
    ctx_entry *n = realloc(w->ctx, (size_t)cap * sizeof *w->ctx);
    if (!n) return -1;
    w->ctx = n;
    w->ctx_cap = cap;
    return 0;
}

/* Take the contexts the loader warmed up for this worker. */
static void adopt_inbox(worker *w) {
    server *s = w->srv;
    pthread_mutex_lock(&s->work.inbox_mu);
    ctx_entry *in = w->inbox;
    int n = w->ninbox;
    w->inbox = NULL;
    w->ninbox = 0;
    pthread_mutex_unlock(&s->work.inbox_mu);
    if (n && ctx_reserve(w, n) == 0) {
        memcpy(w->ctx + w->nctx, in, (size_t)n * sizeof *in);
        w->nctx += n;
    } else
        free_contexts(in, n);
    free(in);
}

/* This worker's context for model m: normally warmed up by the loader (workers_prepare),
 * else created here on first use. Contexts are sized for their model at creation, so
 * one per (worker, model). */
static effdet_context *context_for(worker *w, model_entry *m, effdet_error *e, effdet_status *st) {
    adopt_inbox(w);
    for (int i = 0; i < w->nctx; i++)
        if (w->ctx[i].model == m) return w->ctx[i].ctx;
    if (ctx_reserve(w, 1)) {
        *st = EFFDET_ERR_NOMEM;
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return NULL;
    }
    effdet_context *ctx = NULL;
    *st = effdet_context_create(m->model, w->srv->work.threads, &ctx, e);
    if (*st != EFFDET_OK) return NULL;
    w->ctx[w->nctx].model = model_entry_ref(m);
    w->ctx[w->nctx].ctx = ctx;
    w->nctx++;
    return ctx;
}

/* Free contexts of models a reload dropped. (Not "models outside the current set": the
 * loader warms up contexts of the next set before the loop swaps it in.) */
static void prune_contexts(worker *w) {
    int freed = 0;
    for (int i = 0; i < w->nctx;) {
        if (!atomic_load(&w->ctx[i].model->retired)) {
            i++;
            continue;
        }
        free_contexts(&w->ctx[i], 1);
        w->ctx[i] = w->ctx[--w->nctx];
        freed = 1;
    }
#ifdef __GLIBC__
    /* glibc raises its mmap threshold after the first large free, so later arenas come
     * from the heap and stay in the process when freed: hand them back. */
    if (freed) malloc_trim(0);
#else
    (void)freed;
#endif
}

static void run_job(worker *w, job *j) {
    effdet_error e = {{0}};
    effdet_status st = EFFDET_ERR_INTERNAL;
    effdet_image img = {0};
    j->t_start_ms = now_ms();
    if (atomic_load(&j->cancelled)) return; /* the loop discards it */
    if (j->t_start_ms > j->deadline_ms) {
        reject r;
        reject_with(&r, 504, "deadline_exceeded", "the request waited in the queue past its deadline");
        job_fail(j, &r);
        return;
    }
    effdet_context *ctx = context_for(w, j->model, &e, &st);
    if (!ctx) {
        job_fail_engine(j, st, &e);
        return;
    }
    const effdet_info *info = j->model->info;
    /* An annotated image is drawn at the file's size, so render jobs decode unscaled. */
    int render = j->kind == JOB_DETECT && j->dp.render == RENDER_JPEG;
    effdet_decode_opts dopt = {j->max_pixels, j->allow_dct && !render, info->input_w, info->input_h};
    double t0 = now_ms();
    /* on the context's threads: a large frame decodes in segments (docs/images.md) */
    st = effdet_context_decode_jpeg(ctx, j->image, j->image_len, &dopt, &img, &e);
    j->decode_ms = now_ms() - t0;
    if (st != EFFDET_OK) {
        job_fail_engine(j, st, &e);
        return;
    }
    effdet_detect_opts o;
    effdet_detect_opts_default(&o);
    if (j->kind == JOB_COMPAT) {
        o.score_threshold = (float)j->min_confidence;
        o.max_detections = j->compat_max;
    } else {
        o.score_threshold = (float)j->dp.threshold;
        o.max_detections = j->dp.max_detections;
        o.nms = j->dp.nms ? EFFDET_NMS_SOFT : EFFDET_NMS_HARD;
        o.class_mask = j->class_mask;
    }
    effdet_result r;
    st = effdet_detect_image(ctx, &img, &o, &r, &e);
    if (st != EFFDET_OK) {
        job_fail_engine(j, st, &e);
        goto done;
    }
    j->infer_ms = r.preprocess_ms + r.forward_ms;
    j->post_ms = r.postprocess_ms;
    /* r.dets are sorted by score, highest first, and stay valid until ctx's next call. */
    const effdet_detection *dets = r.dets;
    int n = r.count;
    j->detections = n;
    j->t_end_ms = now_ms();
    if (render) {
        effdet_image_draw_detections(&img, j->model->model, dets, n);
        uint8_t *jpg = NULL;
        size_t len = 0;
        st = effdet_image_encode_jpeg(&img, j->render_quality, &jpg, &len, &e);
        if (st != EFFDET_OK) {
            job_fail_engine(j, st, &e);
            goto done;
        }
        j->x_detections = detections_header(j, dets, n);
        j->resp = (char *)jpg;
        j->resp_len = len;
        j->content_type = "image/jpeg";
        j->status = 200;
        goto done;
    }
    sbuf b;
    sb_init(&b);
    if (j->kind == JOB_COMPAT)
        write_compat_json(j, &r, dets, n, &b);
    else
        write_detect_json(j, &r, dets, n, &b);
    if (b.oom) {
        sb_free(&b);
        reject oom;
        reject_with(&oom, 503, "out_of_memory", "out of memory");
        job_fail(j, &oom);
        goto done;
    }
    j->resp = b.data;
    j->resp_len = b.len;
    j->content_type = "application/json";
    j->status = 200;
done:
    effdet_image_free(&img);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    server *s = w->srv;
    void *item;
    unsigned kicks = 0;
    int r;
    while ((r = queue_pop_or_kick(&s->work.queue, &item, &kicks)) >= 0) {
        if (r == 0) { /* a reload retired models: free their contexts now, not at the next job */
            adopt_inbox(w);
            prune_contexts(w);
            continue;
        }
        job *j = item;
        atomic_fetch_add(&s->work.busy, 1);
        run_job(w, j);
        if (!j->t_end_ms) j->t_end_ms = now_ms();
        atomic_fetch_sub(&s->work.busy, 1);
        job_done(s, j);
        prune_contexts(w);
    }
    free_contexts(w->ctx, w->nctx);
    free(w->ctx);
    return NULL;
}

typedef struct {
    server *srv;
    worker *w;
    model_set *set, *old;
    int warmup;
} prepare_arg;

static int set_has(const model_set *s, const model_entry *m) {
    for (int i = 0; s && i < s->count; i++)
        if (s->models[i] == m) return 1;
    return 0;
}

/* One detection on a mid-grey image the size of the network input: the first inference
 * of a fresh context pays for faulting in its arena; without this the first request on
 * each worker is several times slower than the rest (and Frigate's 0.1 s client timeout
 * fires). The only warm-up: it runs on the contexts that will serve. */
static effdet_status warm_up(effdet_context *ctx, const model_entry *m) {
    effdet_image img = {.rgb = NULL, .width = m->info->input_w, .height = m->info->input_h};
    size_t bytes = (size_t)img.width * (size_t)img.height * 3;
    if (!(img.rgb = malloc(bytes))) return EFFDET_ERR_NOMEM;
    memset(img.rgb, 128, bytes);
    effdet_detect_opts o;
    effdet_detect_opts_default(&o);
    effdet_result r;
    effdet_status st = effdet_detect_image(ctx, &img, &o, &r, NULL);
    free(img.rgb);
    return st;
}

static void *prepare_main(void *arg) {
    prepare_arg *a = arg;
    ctx_entry *made = calloc((size_t)a->set->count, sizeof *made);
    int n = 0;
    for (int i = 0; made && i < a->set->count; i++) {
        model_entry *m = a->set->models[i];
        effdet_context *ctx = NULL;
        if (set_has(a->old, m) ||
            effdet_context_create(m->model, a->srv->work.threads, &ctx, NULL) != EFFDET_OK)
            continue;
        const char *why_not_amx, *bf16 = effdet_context_bf16_kernel(ctx, &why_not_amx);
        if (bf16 && a->w == &a->srv->work.workers[0]) /* once per model, not per worker */
            log_info(&a->srv->log, "model %s: bf16 1x1 convs on %s%s%s", m->name, bf16,
                     why_not_amx ? " - no AMX: " : "", why_not_amx ? why_not_amx : "");
        if (a->warmup && warm_up(ctx, m) != EFFDET_OK) {
            effdet_context_free(ctx); /* the worker creates its own on first use */
            continue;
        }
        made[n].model = model_entry_ref(m);
        made[n].ctx = ctx;
        n++;
    }
    pthread_mutex_lock(&a->srv->work.inbox_mu);
    ctx_entry *in = n ? realloc(a->w->inbox, (size_t)(a->w->ninbox + n) * sizeof *in) : NULL;
    if (in) {
        memcpy(in + a->w->ninbox, made, (size_t)n * sizeof *made);
        a->w->inbox = in;
        a->w->ninbox += n;
        n = 0;
    }
    pthread_mutex_unlock(&a->srv->work.inbox_mu);
    free_contexts(made, n); /* could not hand them over: the worker creates its own */
    free(made);
    return NULL;
}

void workers_prepare(server *s, model_set *set, model_set *old, int warmup) {
    prepare_arg *args = calloc((size_t)s->work.nworkers, sizeof *args);
    pthread_t *t = calloc((size_t)s->work.nworkers, sizeof *t);
    int *started = calloc((size_t)s->work.nworkers, sizeof *started);
    if (!args || !t || !started) goto done; /* workers create contexts on first use */
    for (int i = 0; i < s->work.nworkers; i++) {
        args[i] = (prepare_arg){s, &s->work.workers[i], set, old, warmup};
        started[i] = pthread_create(&t[i], NULL, prepare_main, &args[i]) == 0;
    }
    for (int i = 0; i < s->work.nworkers; i++)
        if (started[i]) pthread_join(t[i], NULL);
done:
    free(args);
    free(t);
    free(started);
}

int workers_start(server *s, char *err, size_t errlen) {
    s->work.workers = calloc((size_t)s->work.nworkers, sizeof *s->work.workers);
    if (!s->work.workers) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < s->work.nworkers; i++) {
        s->work.workers[i].srv = s;
        if (pthread_create(&s->work.workers[i].thread, NULL, worker_main, &s->work.workers[i]) != 0) {
            errf(err, errlen, "cannot start worker thread %d", i);
            queue_close(&s->work.queue);
            for (int k = 0; k < i; k++) pthread_join(s->work.workers[k].thread, NULL);
            free(s->work.workers);
            s->work.workers = NULL;
            return -1;
        }
    }
    return 0;
}

static void cancel_job(void *item) {
    atomic_store(&((job *)item)->cancelled, 1);
}

void workers_join(server *s) {
    /* Jobs still queued after a drain timeout are never run: the workers skip them and
     * hand them back for server_free. */
    queue_visit(&s->work.queue, cancel_job);
    queue_close(&s->work.queue);
    for (int i = 0; s->work.workers && i < s->work.nworkers; i++)
        pthread_join(s->work.workers[i].thread, NULL);
    for (int i = 0; s->work.workers && i < s->work.nworkers; i++) {
        worker *w = &s->work.workers[i];
        free_contexts(w->inbox, w->ninbox);
        free(w->inbox);
    }
    free(s->work.workers);
    s->work.workers = NULL;
}
