/*
 * effdet_model_load(): safetensors -> architecture (from __metadata__) -> prepared
 * layers. Every tensor the architecture expects must be present with its exact shape,
 * and every tensor in the file must be used: a mismatch means the file is not the
 * model its metadata claims, and running it anyway would silently give garbage.
 *
 * The same walk, run without a file (effdet_describe_config), lists the tensors it
 * would ask for: the converter checks checkpoints against that list, so the rules for
 * names and shapes live here only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/cpu.h"
#include "core/status.h"
#include "model/model.h"
#include "model/safetensors.h"

typedef struct {
    effdet_model *m;
    st_file *f;        /* NULL: listing mode, record each request in `specs` instead of reading */
    const char *where; /* file (or config) named in messages */
    effdet_error *err;
    effdet_tensor_spec *specs;
    int num_specs, cap_specs;
    const kernel_table *k; /* bf16 model: the kernels that pack its 1x1 weights; else NULL */
} loader;

static int listing(const loader *ld) {
    return ld->f == NULL;
}

/* Listing mode: remember that the architecture needs tensor `name` of this shape. A
 * tensor read more than once (a head's pointwise conv, shared by the levels, is folded
 * into each level's BN) is listed once. */
static effdet_status record_spec(loader *ld, const char *name, int ndim, const int64_t *shape) {
    for (int i = ld->num_specs - 1; i >= 0; i--)
        if (strcmp(ld->specs[i].name, name) == 0) return EFFDET_OK;
    if (ld->num_specs == ld->cap_specs) {
        int cap = ld->cap_specs ? 2 * ld->cap_specs : 512;
        effdet_tensor_spec *p = realloc(ld->specs, (size_t)cap * sizeof *p);
        if (!p) return set_error(ld->err, EFFDET_ERR_NOMEM, "out of memory listing tensors");
        ld->specs = p;
        ld->cap_specs = cap;
    }
    effdet_tensor_spec *t = &ld->specs[ld->num_specs];
    if (strlen(name) >= sizeof t->name || ndim > EFFDET_SPEC_MAX_DIMS)
        return set_error(ld->err, EFFDET_ERR_INTERNAL, "tensor name '%s' too long to list", name);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    ld->num_specs++;
    return EFFDET_OK;
}

/* Read a tensor as float32 into the caller's dst or, listing, record the request and
 * give the caller zeros to work on. */
static effdet_status fetch_tensor(loader *ld, const char *name, int ndim, const int64_t *shape, float *dst) {
    if (!listing(ld)) return st_read_f32(ld->f, name, ndim, shape, dst, ld->err);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    memset(dst, 0, n * sizeof(float));
    return record_spec(ld, name, ndim, shape);
}

/* A 64-byte aligned buffer owned by the model (freed with it). */
static void *alloc_model_bytes(loader *ld, size_t bytes) {
    effdet_model *m = ld->m;
    if (m->num_allocs == m->cap_allocs) {
        int cap = m->cap_allocs ? 2 * m->cap_allocs : 256;
        void **p = realloc(m->allocs, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        m->allocs = p;
        m->cap_allocs = cap;
    }
    void *w = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (w) m->allocs[m->num_allocs++] = w;
    return w;
}

static float *alloc_weights(loader *ld, size_t n) {
    return alloc_model_bytes(ld, n * sizeof(float));
}

/* Read a tensor into a fresh float buffer; NULL (with err set) on failure. Listing, the
 * request is recorded and the buffer holds zeros. */
static float *read_tensor(loader *ld, const char *name, int ndim, const int64_t *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    /* Listing: calloc's zeros cost no page writes for big tensors (fetch_tensor's memset
     * would touch every page of every weight of a D7). */
    float *buf = listing(ld) ? calloc(n, sizeof(float)) : malloc(n * sizeof(float));
    if (!buf) {
        set_error(ld->err, EFFDET_ERR_NOMEM, "%s: out of memory reading '%s'", ld->where, name);
        return NULL;
    }
    effdet_status st = listing(ld) ? record_spec(ld, name, ndim, shape)
                                   : st_read_f32(ld->f, name, ndim, shape, buf, ld->err);
    if (st != EFFDET_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Per-channel BN as scale and shift: y = x * scale + shift (double for the fold). */
static effdet_status read_bn(loader *ld, const char *prefix, int c, float eps, double *scale, double *shift) {
    static const char *parts[4] = {"weight", "bias", "running_mean", "running_var"};
    float *t[4] = {0};
    int64_t shape[1] = {c};
    effdet_status st = EFFDET_OK;
    for (int i = 0; i < 4; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.%s", prefix, parts[i]);
        if (!(t[i] = read_tensor(ld, name, 1, shape))) {
            st = EFFDET_ERR_FORMAT;
            goto done;
        }
    }
    for (int i = 0; i < c; i++) {
        if (!(t[3][i] >= 0)) {
            st = set_error(ld->err, EFFDET_ERR_FORMAT,
                           "%s: tensor '%s.running_var' has a negative or NaN value", ld->where, prefix);
            goto done;
        }
        scale[i] = t[0][i] / sqrt((double)t[3][i] + eps);
        shift[i] = t[1][i] - t[2][i] * scale[i];
    }
done:
    for (int i = 0; i < 4; i++) free(t[i]);
    return st;
}

/*
 * A 1x1 conv ([cout, cin, 1, 1], optional bias) optionally followed by BN, folded and
 * transposed to [cin][cout] for the GEMM. bn_prefix NULL = no BN.
 */
static effdet_status load_pw(loader *ld, const char *conv, int has_bias, const char *bn_prefix, float eps,
                             int cin, int cout, int se_folded, pw_layer *out) {
    char name[256];
    int64_t wshape[4] = {cout, cin, 1, 1}, bshape[1] = {cout};
    effdet_status st = EFFDET_ERR_FORMAT;
    float *w = NULL, *b = NULL;
    double *scale = malloc(sizeof(double) * 2 * (size_t)cout), *shift = scale ? scale + cout : NULL;
    if (!scale) return set_error(ld->err, EFFDET_ERR_NOMEM, "out of memory");
    snprintf(name, sizeof name, "%s.weight", conv);
    if (!(w = read_tensor(ld, name, 4, wshape))) goto done;
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", conv);
        if (!(b = read_tensor(ld, name, 1, bshape))) goto done;
    }
    for (int o = 0; o < cout; o++) scale[o] = 1, shift[o] = 0;
    if (bn_prefix && (st = read_bn(ld, bn_prefix, cout, eps, scale, shift))) goto done;
    st = EFFDET_OK;
    if (listing(ld)) goto done; /* names and shapes only: nothing to prepare */
    out->cin = cin;
    out->cout = cout;
    /* bf16 model: the folded weights are packed for the bf16 kernels, and the fp32 copy
     * is kept only where the SE fold of a projection scales it per request before
     * rounding; elsewhere it is a temporary. */
    const int bf16 = ld->k && cin <= BF16_MAX_CIN, keep_fp32 = !bf16 || se_folded;
    size_t n = (size_t)cin * cout;
    out->w = keep_fp32 ? alloc_weights(ld, n) : malloc(n * sizeof(float));
    out->b = alloc_weights(ld, (size_t)cout);
    out->wbf = bf16 ? alloc_model_bytes(ld, bf16_packed_elems(cin, cout) * sizeof(uint16_t)) : NULL;
    if (!out->w || !out->b || (bf16 && !out->wbf)) {
        if (!keep_fp32) free(out->w);
        out->w = NULL;
        st = set_error(ld->err, EFFDET_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int o = 0; o < cout; o++) {
        for (int i = 0; i < cin; i++)
            out->w[(size_t)i * cout + o] = (float)(w[(size_t)o * cin + i] * scale[o]);
        out->b[o] = (float)((b ? b[o] : 0.0) * scale[o] + shift[o]);
    }
    if (bf16) ld->k->fold_bf16(NULL, out->w, NULL, cin, cout, out->wbf);
    if (!keep_fp32) {
        free(out->w);
        out->w = NULL;
    }
    st = EFFDET_OK;
done:
    free(w);
    free(b);
    free(scale);
    return st;
}

/* Depthwise conv [c, 1, k, k] (no bias in any EfficientDet dw conv), optional BN,
 * repacked tap-major [k*k][c] so the kernel's inner loop runs over channels. */
static effdet_status load_dw(loader *ld, const char *conv, const char *bn_prefix, float eps, int c, int k,
                             int stride, dw_layer *out) {
    char name[256];
    int64_t wshape[4] = {c, 1, k, k};
    effdet_status st = EFFDET_ERR_FORMAT;
    double *scale = malloc(sizeof(double) * 2 * (size_t)c), *shift = scale ? scale + c : NULL;
    float *w = NULL;
    if (!scale) return set_error(ld->err, EFFDET_ERR_NOMEM, "out of memory");
    snprintf(name, sizeof name, "%s.weight", conv);
    if (!(w = read_tensor(ld, name, 4, wshape))) goto done;
    for (int i = 0; i < c; i++) scale[i] = 1, shift[i] = 0;
    if (bn_prefix && (st = read_bn(ld, bn_prefix, c, eps, scale, shift))) goto done;
    st = EFFDET_OK;
    if (listing(ld)) goto done;
    out->c = c;
    out->k = k;
    out->stride = stride;
    out->w = alloc_weights(ld, (size_t)k * k * c);
    out->b = alloc_weights(ld, (size_t)c);
    if (!out->w || !out->b) {
        st = set_error(ld->err, EFFDET_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int ch = 0; ch < c; ch++) {
        for (int t = 0; t < k * k; t++)
            out->w[(size_t)t * c + ch] = (float)(w[(size_t)ch * k * k + t] * scale[ch]);
        out->b[ch] = (float)shift[ch];
    }
    st = EFFDET_OK;
done:
    free(w);
    free(scale);
    return st;
}

static effdet_status load_stem(loader *ld, const effdet_arch *a, conv_layer *out) {
    int cout = a->stem_ch, cin = 3, k = 3;
    int64_t wshape[4] = {cout, cin, k, k};
    double *scale = malloc(sizeof(double) * 2 * (size_t)cout), *shift = scale ? scale + cout : NULL;
    float *w = NULL;
    effdet_status st = EFFDET_ERR_FORMAT;
    if (!scale) return set_error(ld->err, EFFDET_ERR_NOMEM, "out of memory");
    if (!(w = read_tensor(ld, "backbone.conv_stem.weight", 4, wshape))) goto done;
    if ((st = read_bn(ld, "backbone.bn1", cout, a->backbone_bn_eps, scale, shift))) goto done;
    if (listing(ld)) goto done; /* st is EFFDET_OK */
    st = EFFDET_ERR_NOMEM;
    out->cin = cin, out->cout = cout, out->k = k, out->stride = 2;
    out->w = alloc_weights(ld, (size_t)k * k * cin * cout);
    out->b = alloc_weights(ld, (size_t)cout);
    if (!out->w || !out->b) goto done;
    for (int o = 0; o < cout; o++) {
        for (int i = 0; i < cin; i++)
            for (int t = 0; t < k * k; t++)
                out->w[((size_t)t * cin + i) * cout + o] =
                    (float)(w[((size_t)o * cin + i) * k * k + t] * scale[o]);
        out->b[o] = (float)shift[o];
    }
    st = EFFDET_OK;
done:
    if (st == EFFDET_ERR_NOMEM) set_error(ld->err, st, "out of memory");
    free(w);
    free(scale);
    return st;
}

static effdet_status load_se(loader *ld, const char *prefix, int c, int rd, se_layer *out) {
    char name[256];
    int64_t w1s[4] = {rd, c, 1, 1}, b1s[1] = {rd}, w2s[4] = {c, rd, 1, 1}, b2s[1] = {c};
    float *w1 = NULL, *b1 = NULL, *w2 = NULL, *b2 = NULL;
    effdet_status st = EFFDET_ERR_FORMAT;
    snprintf(name, sizeof name, "%s.conv_reduce.weight", prefix);
    if (!(w1 = read_tensor(ld, name, 4, w1s))) goto done;
    snprintf(name, sizeof name, "%s.conv_reduce.bias", prefix);
    if (!(b1 = read_tensor(ld, name, 1, b1s))) goto done;
    snprintf(name, sizeof name, "%s.conv_expand.weight", prefix);
    if (!(w2 = read_tensor(ld, name, 4, w2s))) goto done;
    snprintf(name, sizeof name, "%s.conv_expand.bias", prefix);
    if (!(b2 = read_tensor(ld, name, 1, b2s))) goto done;
    st = EFFDET_OK;
    if (listing(ld)) goto done;
    out->c = c, out->rd = rd;
    out->w1 = alloc_weights(ld, (size_t)c * rd);
    out->b1 = alloc_weights(ld, (size_t)rd);
    out->w2 = alloc_weights(ld, (size_t)rd * c);
    out->b2 = alloc_weights(ld, (size_t)c);
    if (!out->w1 || !out->b1 || !out->w2 || !out->b2) {
        st = set_error(ld->err, EFFDET_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int r = 0; r < rd; r++)
        for (int i = 0; i < c; i++) out->w1[(size_t)i * rd + r] = w1[(size_t)r * c + i];
    for (int i = 0; i < c; i++)
        for (int r = 0; r < rd; r++) out->w2[(size_t)r * c + i] = w2[(size_t)i * rd + r];
    memcpy(out->b1, b1, sizeof(float) * (size_t)rd);
    memcpy(out->b2, b2, sizeof(float) * (size_t)c);
    st = EFFDET_OK;
done:
    free(w1), free(b1), free(w2), free(b2);
    return st;
}

/* timm names: DS block = conv_dw, bn1, se, conv_pw, bn2;
 *             IR block = conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3. */
static effdet_status load_block(loader *ld, const effdet_arch *a, const block_spec *b, block_layers *out) {
    char p[128], conv[160], bn[160];
    float eps = a->backbone_bn_eps;
    effdet_status st;
    snprintf(p, sizeof p, "backbone.blocks.%d.%d", b->stage, b->index_in_stage);
    out->spec = *b;
    const char *dw_bn = b->type == BLOCK_IR ? "bn2" : "bn1";
    if (b->type == BLOCK_IR) {
        snprintf(conv, sizeof conv, "%s.conv_pw", p);
        snprintf(bn, sizeof bn, "%s.bn1", p);
        if ((st = load_pw(ld, conv, 0, bn, eps, b->in_ch, b->mid_ch, 0, &out->expand))) return st;
    }
    snprintf(conv, sizeof conv, "%s.conv_dw", p);
    snprintf(bn, sizeof bn, "%s.%s", p, dw_bn);
    if ((st = load_dw(ld, conv, bn, eps, b->mid_ch, b->k, b->stride, &out->dw))) return st;
    snprintf(conv, sizeof conv, "%s.se", p);
    if ((st = load_se(ld, conv, b->mid_ch, b->se_ch, &out->se))) return st;
    snprintf(conv, sizeof conv, "%s.%s", p, b->type == BLOCK_IR ? "conv_pwl" : "conv_pw");
    snprintf(bn, sizeof bn, "%s.%s", p, b->type == BLOCK_IR ? "bn3" : "bn2");
    return load_pw(ld, conv, 0, bn, eps, b->mid_ch, b->out_ch, 1, &out->project);
}

/* ResampleFeatureMap's conv: "<prefix>.conv.conv" + "<prefix>.conv.bn". */
static effdet_status load_lateral(loader *ld, const effdet_arch *a, const char *prefix, int cin,
                                  lateral_layer *out) {
    char conv[200], bn[200];
    out->has_conv = cin != a->fpn_channels;
    if (!out->has_conv) return EFFDET_OK;
    snprintf(conv, sizeof conv, "%s.conv.conv", prefix);
    snprintf(bn, sizeof bn, "%s.conv.bn", prefix);
    return load_pw(ld, conv, a->redundant_bias, bn, a->fpn_bn_eps, cin, a->fpn_channels, 0, &out->conv);
}

static effdet_status load_fpn_node(loader *ld, const effdet_arch *a, int cell, int n, fpn_node_layers *out) {
    char p[128], name[200], bn[200];
    effdet_status st;
    int F = a->fpn_channels;
    const fpn_node_spec *spec = &a->fpn_nodes[n];
    snprintf(p, sizeof p, "fpn.cell.%d.fnode.%d", cell, n);
    out->spec = *spec;
    if (a->fusion == FUSE_FASTATTN) {
        int64_t shape[1] = {spec->num_inputs};
        snprintf(name, sizeof name, "%s.combine.edge_weights", p);
        if ((st = fetch_tensor(ld, name, 1, shape, out->edge_w))) return st;
    }
    for (int j = 0; j < spec->num_inputs; j++) {
        int id = spec->inputs[j];
        memset(&out->lateral[j], 0, sizeof out->lateral[j]);
        if (cell == 0 && id < 3) {
            /* effdet keys each input's resample module by its input offset. */
            snprintf(name, sizeof name, "%s.combine.resample.%d", p, id);
            if ((st = load_lateral(ld, a, name, a->feature_ch[id], &out->lateral[j]))) return st;
        }
    }
    snprintf(name, sizeof name, "%s.after_combine.conv.conv_dw", p);
    if ((st = load_dw(ld, name, NULL, 0, F, 3, 1, &out->dw))) return st;
    snprintf(name, sizeof name, "%s.after_combine.conv.conv_pw", p);
    snprintf(bn, sizeof bn, "%s.after_combine.conv.bn", p);
    return load_pw(ld, name, a->redundant_bias, bn, a->fpn_bn_eps, F, F, 0, &out->pw);
}

static effdet_status load_head(loader *ld, const effdet_arch *a, const char *net, int outputs,
                               head_layers *out) {
    char name[200], bn[200];
    effdet_status st;
    int F = a->fpn_channels;
    out->repeats = a->head_repeats;
    for (int r = 0; r < a->head_repeats; r++) {
        snprintf(name, sizeof name, "%s.conv_rep.%d.conv_dw", net, r);
        if ((st = load_dw(ld, name, NULL, 0, F, 3, 1, &out->dw[r]))) return st;
        /* One pointwise conv shared by all levels, but each level has its own BN:
         * fold each BN into its own copy. */
        snprintf(name, sizeof name, "%s.conv_rep.%d.conv_pw", net, r);
        for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
            snprintf(bn, sizeof bn, "%s.bn_rep.%d.%d.bn", net, r, l);
            if ((st = load_pw(ld, name, a->redundant_bias, bn, a->fpn_bn_eps, F, F, 0, &out->pw[r][l])))
                return st;
        }
    }
    snprintf(name, sizeof name, "%s.predict.conv_dw", net);
    if ((st = load_dw(ld, name, NULL, 0, F, 3, 1, &out->pred_dw))) return st;
    snprintf(name, sizeof name, "%s.predict.conv_pw", net);
    return load_pw(ld, name, 1, NULL, 0, F, outputs, 0, &out->pred_pw);
}

static effdet_status load_layers(loader *ld) {
    effdet_model *m = ld->m;
    const effdet_arch *a = &m->arch;
    effdet_status st;
    if ((st = load_stem(ld, a, &m->stem))) return st;
    m->blocks = calloc((size_t)a->num_blocks, sizeof *m->blocks);
    m->nodes = calloc((size_t)a->fpn_repeats * a->num_fpn_nodes, sizeof *m->nodes);
    if (!m->blocks || !m->nodes) return set_error(ld->err, EFFDET_ERR_NOMEM, "out of memory");
    for (int i = 0; i < a->num_blocks; i++)
        if ((st = load_block(ld, a, &a->blocks[i], &m->blocks[i]))) return st;
    if ((st = load_lateral(ld, a, "fpn.resample.3", a->feature_ch[2], &m->p6_conv))) return st;
    for (int c = 0; c < a->fpn_repeats; c++)
        for (int n = 0; n < a->num_fpn_nodes; n++)
            if ((st = load_fpn_node(ld, a, c, n, &m->nodes[c * a->num_fpn_nodes + n]))) return st;
    if ((st = load_head(ld, a, "class_net", a->num_anchors * a->num_classes, &m->class_head))) return st;
    return load_head(ld, a, "box_net", a->num_anchors * 4, &m->box_head);
}

/* A bf16 model's packing kernels: the level contexts will run must have them and this
 * CPU must run them (the check effdet_context_create() repeats). */
static effdet_status bf16_kernels(const kernel_table **out, effdet_error *err) {
    effdet_status st = effdet_precision_check(EFFDET_PRECISION_BF16, err);
    if (st) return st;
    return kernels_select(out, err);
}

effdet_status effdet_model_load(const char *path, effdet_model **out, effdet_error *err) {
    return effdet_model_load_opts(path, NULL, out, err);
}

effdet_status effdet_model_load_opts(const char *path, const effdet_load_opts *opts, effdet_model **out,
                                     effdet_error *err) {
    st_file f;
    effdet_status st;
    effdet_load_opts o;
    const kernel_table *k = NULL;
    *out = NULL;
    if (opts)
        o = *opts;
    else
        effdet_load_opts_default(&o);
    if (!path) return set_error(err, EFFDET_ERR_ARG, "no model path given");
    if (!effdet_precision_name(o.precision))
        return set_error(err, EFFDET_ERR_ARG, "precision %d: expected fp32 or bf16", (int)o.precision);
    if (o.precision == EFFDET_PRECISION_BF16 && (st = bf16_kernels(&k, err))) return st;
    if ((st = st_open(path, &f, err))) return st;
    effdet_model *m = calloc(1, sizeof *m);
    if (!m) {
        st_close(&f);
        return set_error(err, EFFDET_ERR_NOMEM, "out of memory");
    }
    m->precision = o.precision;
    loader ld = {m, &f, path, err, NULL, 0, 0, k};
    if ((st = arch_from_metadata(&m->arch, f.metadata_config, path, err))) goto fail;
    if ((st = load_layers(&ld))) goto fail;
    if ((st = st_check_all_used(&f, err))) goto fail;
    if ((st = model_load_labels(m, f.metadata_config, path, err))) goto fail;
    arch_fill_info(&m->arch, &m->info);
    m->info.precision = m->precision;
    m->info.arena_bytes = model_measure_arena(m);
    st_close(&f);
    *out = m;
    return EFFDET_OK;
fail:
    st_close(&f);
    effdet_model_free(m);
    return st;
}

void effdet_model_free(effdet_model *m) {
    if (!m) return;
    for (int i = 0; i < m->num_allocs; i++) free(m->allocs[i]);
    free(m->allocs);
    free(m->blocks);
    free(m->nodes);
    labels_free(&m->labels);
    free(m);
}

const effdet_info *effdet_model_info(const effdet_model *m) {
    return &m->info;
}

const char *effdet_model_label(const effdet_model *m, int cls) {
    return m ? labels_name(&m->labels, cls) : NULL;
}

/* The loader's walk without a file: which tensors, in which order, of which shape. The
 * labels are parsed too, so that a config this accepts is one effdet_model_load accepts. */
effdet_status effdet_describe_config(const char *config_json, const char *where, effdet_info *info,
                                     effdet_tensor_spec **tensors, int *count, effdet_error *err) {
    effdet_status st;
    if (tensors) *tensors = NULL;
    if (count) *count = 0;
    if (!config_json || !info) return set_error(err, EFFDET_ERR_ARG, "no config given");
    if (!where) where = "config";
    effdet_model *m = calloc(1, sizeof *m);
    if (!m) return set_error(err, EFFDET_ERR_NOMEM, "out of memory");
    loader ld = {m, NULL, where, err, NULL, 0, 0, NULL};
    if ((st = arch_from_metadata(&m->arch, config_json, where, err))) goto done;
    if ((st = model_load_labels(m, config_json, where, err))) goto done;
    if ((st = load_layers(&ld))) goto done;
    arch_fill_info(&m->arch, info);
    if (tensors) {
        *tensors = ld.specs;
        ld.specs = NULL;
    }
    if (count) *count = ld.num_specs;
done:
    free(ld.specs);
    effdet_model_free(m);
    return st;
}
