/* The model set: every loaded model, immutable once built, reference-counted and swapped
 * atomically on SIGHUP. A job holds a reference to the set it started with, so a reload
 * never frees a model under a running inference. */
#ifndef EFFDETD_MODELS_H
#define EFFDETD_MODELS_H

#include <stdatomic.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "effdet.h"
#include "log.h"

typedef struct model_entry {
    atomic_int refs;
    atomic_int retired; /* set when a reload drops it: workers free their contexts */
    char name[128];
    char path[1024];
    effdet_model *model;
    const effdet_info *info;
    dev_t dev; /* file identity: an unchanged file is not reloaded on SIGHUP */
    ino_t ino;
    off_t size;
    struct timespec mtime;
} model_entry;

typedef struct {
    atomic_int refs;
    int count;
    model_entry **models; /* sorted by name */
    int default_index;
    int failures; /* models that failed to load while building it (old ones kept or dropped) */
} model_set;

model_entry *model_entry_ref(model_entry *m);
void model_entry_unref(model_entry *m);
model_set *model_set_ref(model_set *s);
void model_set_unref(model_set *s);

/* Load the models the config names. Models of `old` whose file is unchanged are reused;
 * a model that fails to load is logged and, when `old` has one of that name, the old one
 * is kept. (*out)->failures counts the models that failed. -1 with a message when no
 * model could be loaded or the default model is missing. */
int model_set_build(const effdetd_config *cfg, model_set *old, const logger *lg, model_set **out, char *err,
                    size_t errlen);

/* Model by name; "" or NULL = the default model. NULL when unknown. */
model_entry *model_set_find(const model_set *s, const char *name);

/* File stem: "/a/b/tf_efficientdet_d0.safetensors" -> "tf_efficientdet_d0". */
void model_name_from_path(const char *path, char *out, size_t cap);

#endif
