/* Model set construction: directory scan, load, reuse of unchanged files. (The warm-up
 * runs on the workers' own contexts: worker.c.) */
#include "models.h"

#include "errf.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

model_entry *model_entry_ref(model_entry *m) {
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void model_entry_unref(model_entry *m) {
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    effdet_model_free(m->model);
    free(m);
}

model_set *model_set_ref(model_set *s) {
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void model_set_unref(model_set *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (int i = 0; i < s->count; i++) model_entry_unref(s->models[i]);
    free(s->models);
    free(s);
}

void model_name_from_path(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    static const char ext[] = ".safetensors";
    if (n > sizeof ext - 1 && strcmp(base + n - (sizeof ext - 1), ext) == 0) n -= sizeof ext - 1;
    if (n >= cap) n = cap - 1;
    memcpy(out, base, n);
    out[n] = '\0';
}

model_entry *model_set_find(const model_set *s, const char *name) {
    if (!s || s->count == 0) return NULL;
    if (!name || !*name) return s->models[s->default_index];
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->models[i]->name, name) == 0) return s->models[i];
    return NULL;
}

static model_entry *find_by_name(model_set *s, const char *name) {
    if (!s) return NULL;
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->models[i]->name, name) == 0) return s->models[i];
    return NULL;
}

/* Load path as `name`, or reuse old's model when its file is unchanged. NULL on failure
 * (logged; the caller decides whether to keep an old model). */
static model_entry *load_one(const char *name, const char *path, effdet_precision precision, model_set *old,
                             const logger *lg) {
    struct stat st;
    if (stat(path, &st) != 0) {
        log_error(lg, "model %s: %s: %s", name, path, strerror(errno));
        return NULL;
    }
    model_entry *prev = find_by_name(old, name);
    if (prev && strcmp(prev->path, path) == 0 && prev->dev == st.st_dev && prev->ino == st.st_ino &&
        prev->size == st.st_size && prev->mtime.tv_sec == st.st_mtim.tv_sec &&
        prev->mtime.tv_nsec == st.st_mtim.tv_nsec && prev->info->precision == precision)
        return model_entry_ref(prev);

    model_entry *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    atomic_init(&m->refs, 1);
    atomic_init(&m->retired, 0);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->path, sizeof m->path, "%s", path);
    m->dev = st.st_dev, m->ino = st.st_ino, m->size = st.st_size, m->mtime = st.st_mtim;
    effdet_error e = {{0}};
    effdet_load_opts lo;
    effdet_load_opts_default(&lo);
    lo.precision = precision;
    effdet_status s = effdet_model_load_opts(path, &lo, &m->model, &e);
    if (s == EFFDET_OK) m->info = effdet_model_info(m->model);
    if (s != EFFDET_OK) {
        log_error(lg, "model %s: %s: %s (%s)", name, path, e.msg, effdet_status_name(s));
        effdet_model_free(m->model);
        free(m);
        return NULL;
    }
    log_info(lg, "model %s: loaded %s (%s, %dx%d, %d classes, %lld params, %s)", name, path, m->info->name,
             m->info->input_w, m->info->input_h, m->info->num_classes, m->info->params,
             effdet_precision_name(precision));
    return m;
}

typedef struct {
    char name[128];
    char path[1024];
} model_src;

static int cmp_src(const void *a, const void *b) {
    return strcmp(((const model_src *)a)->name, ((const model_src *)b)->name);
}

/* The (name, path) pairs the config asks for: `model`, then every *.safetensors of models_dir.
 * An explicit `model` wins over a directory file of the same name. */
static int list_sources(const effdetd_config *cfg, model_src **out, int *n, char *err, size_t errlen) {
    int cap = 8, count = 0;
    model_src *src = malloc((size_t)cap * sizeof *src);
    if (!src) goto oom;
    if (cfg->model[0]) {
        model_name_from_path(cfg->model, src[0].name, sizeof src[0].name);
        snprintf(src[0].path, sizeof src[0].path, "%s", cfg->model);
        count = 1;
    }
    if (cfg->models_dir[0]) {
        DIR *d = opendir(cfg->models_dir);
        if (!d) {
            errf(err, errlen, "models_dir %s: %s", cfg->models_dir, strerror(errno));
            free(src);
            return -1;
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t len = strlen(de->d_name);
            if (de->d_name[0] == '.' || len <= 12 || strcmp(de->d_name + len - 12, ".safetensors") != 0)
                continue;
            char name[128];
            model_name_from_path(de->d_name, name, sizeof name);
            if (cfg->model[0] && strcmp(name, src[0].name) == 0) continue;
            if (count == cap) {
                model_src *ns = realloc(src, (size_t)(cap *= 2) * sizeof *src);
                if (!ns) {
                    closedir(d);
                    goto oom;
                }
                src = ns;
            }
            snprintf(src[count].name, sizeof src[count].name, "%s", name);
            snprintf(src[count].path, sizeof src[count].path, "%s/%s", cfg->models_dir, de->d_name);
            count++;
        }
        closedir(d);
    }
    qsort(src, (size_t)count, sizeof *src, cmp_src);
    *out = src;
    *n = count;
    return 0;
oom:
    free(src);
    errf(err, errlen, "out of memory listing models");
    return -1;
}

int model_set_build(const effdetd_config *cfg, model_set *old, const logger *lg, model_set **out, char *err,
                    size_t errlen) {
    model_src *src = NULL;
    int nsrc = 0;
    *out = NULL;
    if (list_sources(cfg, &src, &nsrc, err, errlen)) return -1;
    model_set *s = calloc(1, sizeof *s);
    if (!s || !(s->models = calloc((size_t)(nsrc ? nsrc : 1), sizeof(model_entry *)))) {
        free(s);
        free(src);
        errf(err, errlen, "out of memory");
        return -1;
    }
    atomic_init(&s->refs, 1);
    for (int i = 0; i < nsrc; i++) {
        effdet_precision prec = EFFDET_PRECISION_FP32;
        /* config_validate() accepted every value, so this parse cannot fail. */
        effdet_precision_parse(config_model_precision(cfg, src[i].name), &prec, NULL);
        model_entry *m = load_one(src[i].name, src[i].path, prec, old, lg);
        if (!m) s->failures++;
        if (!m && (m = find_by_name(old, src[i].name)) != NULL) {
            log_warn(lg, "model %s: keeping the previously loaded %s", src[i].name, m->path);
            model_entry_ref(m);
        }
        if (m) s->models[s->count++] = m;
    }
    free(src);
    if (s->count == 0) {
        errf(err, errlen, "%s", nsrc ? "no model could be loaded" : "no *.safetensors model found");
        goto fail;
    }
    char want[CFG_STR_MAX] = "";
    if (cfg->default_model[0])
        snprintf(want, sizeof want, "%s", cfg->default_model);
    else if (cfg->model[0])
        model_name_from_path(cfg->model, want, sizeof want);
    s->default_index = 0;
    if (want[0]) {
        int found = -1;
        for (int i = 0; i < s->count; i++)
            if (strcmp(s->models[i]->name, want) == 0) found = i;
        if (found < 0) {
            errf(err, errlen, "default model '%s' is not loaded", want);
            goto fail;
        }
        s->default_index = found;
    }
    *out = s;
    return 0;
fail:
    model_set_unref(s);
    return -1;
}
