/* SIGHUP and the first load: a loader thread builds the configuration and model set, the
 * loop swaps them in (reload.c). */
#ifndef EFFDETD_RELOAD_H
#define EFFDETD_RELOAD_H

typedef struct server server;

/* Loop: start the loader thread (or note that another reload is due after this one). */
void reload_start(server *s);
/* Loop: reload.ev's callback, run when the loader thread has finished. */
void reload_done_cb(int fd, short what, void *arg);
/* At exit: wait for a loader thread still running and drop what it built. */
void reload_join(server *s);

#endif
