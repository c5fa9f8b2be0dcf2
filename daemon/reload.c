/* Reload: the loader thread (reload_main, which touches only s->reload until it signals)
 * builds the configuration and model set; the loop applies them (reload_done_cb). */
#include "reload.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "sdnotify.h"
#include "server.h"

static void notify_status(server *s) {
    model_set *set = server_models(s);
    char st[512];
    snprintf(st, sizeof st, "STATUS=serving %d model(s) on port %d, %d workers, queue %d",
             set ? set->count : 0, s->loop.port, s->work.nworkers, s->work.queue_cap);
    model_set_unref(set);
    sd_notify_send(st);
}

/* Builds the new configuration and model set off the loop thread: loading and warming
 * up a model takes long enough to stall the watchdog and every request. */
static void *reload_main(void *arg) {
    server *s = arg;
    char err[512] = "";
    s->reload.set = NULL;
    s->reload.ok = 0;
    if (config_build(&s->reload.cfg, s->config_path, (const char *const *)s->overrides, s->noverrides, err,
                     sizeof err) == 0 &&
        config_validate(&s->reload.cfg, err, sizeof err) == 0) {
        model_set *old = server_models(s);
        if (model_set_build(&s->reload.cfg, old, &s->log, &s->reload.set, err, sizeof err) == 0) {
            workers_prepare(s, s->reload.set, old, s->reload.cfg.warmup);
            s->reload.ok = 1;
        }
        model_set_unref(old);
    }
    snprintf(s->reload.err, sizeof s->reload.err, "%s", err);
    event_active(s->reload.ev, EV_READ, 0);
    return NULL;
}

void reload_start(server *s) {
    if (s->reload.running) {
        s->reload.pending = 1;
        return;
    }
    s->reload.running = 1;
    if (pthread_create(&s->reload.thread, NULL, reload_main, s) != 0) {
        s->reload.running = 0;
        log_error(&s->log, "reload: cannot start the loader thread");
        if (s->reload.initial) {
            s->loop.exit_code = 1;
            event_base_loopbreak(s->loop.base);
        }
    }
}

void reload_join(server *s) {
    if (!s->reload.running) return;
    pthread_join(s->reload.thread, NULL);
    s->reload.running = 0;
    model_set_unref(s->reload.set);
    s->reload.set = NULL;
}

/* The new configuration, except the options the table marks CFG_RESTART (the listening
 * sockets, threads and queue exist already): those keep their running values. */
static void apply_reloaded_config(server *s, effdetd_config *c) {
    char changed[256];
    config_keep_restart_options(c, &s->cfg, changed, sizeof changed);
    if (changed[0]) log_warn(&s->log, "reload: %s: changes take effect at the next restart", changed);
    s->cfg = *c;
    log_set_level(&s->log, s->cfg.log_level);
    server_apply_config(s);
}

/* Swap the loader's set in; models the new set dropped are retired (workers free their
 * contexts) and freed with their last reference. */
static void swap_models(server *s) {
    pthread_mutex_lock(&s->models.mu);
    model_set *old = s->models.set;
    s->models.set = s->reload.set;
    pthread_mutex_unlock(&s->models.mu);
    const model_set *now = s->models.set;
    for (int i = 0; old && i < old->count; i++) {
        int kept = 0;
        for (int k = 0; k < now->count; k++) kept |= now->models[k] == old->models[i];
        if (!kept) atomic_store(&old->models[i]->retired, 1);
    }
    s->reload.set = NULL;
    model_set_unref(old);       /* jobs still running hold their own reference */
    queue_kick(&s->work.queue); /* idle workers free the retired models' contexts now */
}

void reload_done_cb(int fd, short what, void *arg) {
    server *s = arg;
    pthread_join(s->reload.thread, NULL);
    s->reload.running = 0;
    int first = s->reload.initial;
    s->reload.initial = 0;
    if (s->reload.ok) {
        apply_reloaded_config(s, &s->reload.cfg);
        swap_models(s);
        /* A reload that kept an old model because the new file is broken is a failed
         * reload: operators alert on effdetd_reloads_total{result="failed"}. */
        const model_set *set = s->models.set;
        if (!first && set->failures) {
            s->met.reloads_failed++;
            log_error(&s->log, "reload failed for %d model(s): serving the previous version of each",
                      set->failures);
        } else if (!first)
            s->met.reloads_ok++;
        s->models.ready = 1;
        log_info(&s->log, "%s: %d model(s), default %s", first ? "ready" : "reloaded", set->count,
                 set->models[set->default_index]->name);
    } else if (first) {
        log_error(&s->log, "cannot start: %s", s->reload.err);
        s->loop.exit_code = 1;
        event_base_loopbreak(s->loop.base);
        return;
    } else {
        s->met.reloads_failed++;
        log_error(&s->log, "reload failed, still serving the previous configuration and models: %s",
                  s->reload.err);
    }
    if (!s->drain.active) {
        sd_notify_send("READY=1");
        notify_status(s);
    }
    if (s->reload.pending && !s->drain.active) {
        s->reload.pending = 0;
        char msg[64];
        snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)sd_monotonic_usec());
        sd_notify_send(msg);
        reload_start(s);
    }
    server_check_drain(s);
}
