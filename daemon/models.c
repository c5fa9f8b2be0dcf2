/* Model set construction: directory scan, load, warm-up, reuse of unchanged files. */
#include "models.h"

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

/* One detection on a mid-grey image the size of the network input: proves the weights
 * run end to end and touches every weight page before the first request. */
static effdet_status warm_up(const model_entry *m, int threads, effdet_error *err) {
    effdet_context *ctx = NULL;
    effdet_image img = {.rgb = NULL, .width = m->info->input_w, .height = m->info->input_h};
    effdet_status st = effdet_context_create(m->model, threads, &ctx, err);
    if (st != EFFDET_OK) return st;
    img.rgb = malloc((size_t)img.width * (size_t)img.height * 3);
    if (!img.rgb) {
        effdet_context_free(ctx);
        return EFFDET_ERR_NOMEM;
    }
    memset(img.rgb, 128, (size_t)img.width * (size_t)img.height * 3);
    effdet_detect_opts o;
    effdet_detect_opts_default(&o);
    effdet_result r;
    st = effdet_detect_image(ctx, &img, &o, &r, err);
    free(img.rgb);
    effdet_context_free(ctx);
    return st;
}

static model_entry *find_by_name(model_set *s, const char *name) {
    if (!s) return NULL;
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->models[i]->name, name) == 0) return s->models[i];
    return NULL;
}

/* Load path as `name`, or reuse old's model when its file is unchanged. NULL on failure
 * (logged; the caller decides whether to keep an old model). */
static model_entry *load_one(const effdetd_config *cfg, const char *name, const char *path, model_set *old,
                             const logger *lg, atomic_ullong *next_id) {
    struct stat st;
    if (stat(path, &st) != 0) {
        log_error(lg, "model %s: %s: %s", name, path, strerror(errno));
        return NULL;
    }
    model_entry *prev = find_by_name(old, name);
    if (prev && strcmp(prev->path, path) == 0 && prev->dev == st.st_dev && prev->ino == st.st_ino &&
        prev->size == st.st_size && prev->mtime.tv_sec == st.st_mtim.tv_sec &&
        prev->mtime.tv_nsec == st.st_mtim.tv_nsec)
        return model_entry_ref(prev);

    model_entry *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    atomic_init(&m->refs, 1);
    atomic_init(&m->retired, 0);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->path, sizeof m->path, "%s", path);
    m->dev = st.st_dev, m->ino = st.st_ino, m->size = st.st_size, m->mtime = st.st_mtim;
    effdet_error e = {{0}};
    effdet_status s = effdet_model_load(path, &m->model, &e);
    if (s == EFFDET_OK) {
        m->info = effdet_model_info(m->model);
        if (cfg->warmup) s = warm_up(m, cfg->threads_per_worker, &e);
    }
    if (s != EFFDET_OK) {
        log_error(lg, "model %s: %s: %s (%s)", name, path, e.msg, effdet_status_name(s));
        effdet_model_free(m->model);
        free(m);
        return NULL;
    }
    m->id = atomic_fetch_add(next_id, 1) + 1;
    log_info(lg, "model %s: loaded %s (%s, %dx%d, %d classes, %lld params)", name, path, m->info->name,
             m->info->input_w, m->info->input_h, m->info->num_classes, m->info->params);
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
            snprintf(err, errlen, "models_dir %s: %s", cfg->models_dir, strerror(errno));
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
    snprintf(err, errlen, "out of memory listing models");
    return -1;
}

int model_set_build(const effdetd_config *cfg, model_set *old, const logger *lg, atomic_ullong *next_id,
                    model_set **out, char *err, size_t errlen) {
    model_src *src = NULL;
    int nsrc = 0;
    *out = NULL;
    if (list_sources(cfg, &src, &nsrc, err, errlen)) return -1;
    model_set *s = calloc(1, sizeof *s);
    if (!s || !(s->models = calloc((size_t)(nsrc ? nsrc : 1), sizeof(model_entry *)))) {
        free(s);
        free(src);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    atomic_init(&s->refs, 1);
    for (int i = 0; i < nsrc; i++) {
        model_entry *m = load_one(cfg, src[i].name, src[i].path, old, lg, next_id);
        if (!m) s->failures++;
        if (!m && (m = find_by_name(old, src[i].name)) != NULL) {
            log_warn(lg, "model %s: keeping the previously loaded %s", src[i].name, m->path);
            model_entry_ref(m);
        }
        if (m) s->models[s->count++] = m;
    }
    free(src);
    if (s->count == 0) {
        snprintf(err, errlen, nsrc ? "no model could be loaded" : "no *.safetensors model found");
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
            snprintf(err, errlen, "default model '%s' is not loaded", want);
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
