/*
 * A read-only, validated view of a .safetensors file (format: 8-byte little-endian header
 * length N, N bytes of JSON header, then the data section that every tensor's
 * data_offsets point into, relative to its start).
 *
 * The file comes from the user, so every number in the header is treated as hostile:
 * all arithmetic on it is overflow-checked before anything is dereferenced.
 */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

/* The reference implementation refuses headers over 100 MB; a real header is tens of KB
 * (d0: 72 KB), so anything bigger is a corrupt length, not a big model. */
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

static const char *dtype_name(st_dtype t) {
    switch (t) {
    case ST_F32: return "F32";
    case ST_F16: return "F16";
    case ST_BF16: return "BF16";
    }
    return "?";
}

static size_t dtype_size(st_dtype t) {
    return t == ST_F32 ? 4 : 2;
}

static int parse_dtype(const char *s, st_dtype *out) {
    if (strcmp(s, "F32") == 0)
        *out = ST_F32;
    else if (strcmp(s, "F16") == 0)
        *out = ST_F16;
    else if (strcmp(s, "BF16") == 0)
        *out = ST_BF16;
    else
        return 0;
    return 1;
}

/* The length prefix is little-endian regardless of the host. */
static uint64_t read_u64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* json-c needs a NUL-terminated, exactly-delimited document; the header in the file is
 * neither (it is followed by binary data), so parse a copy with its explicit length. */
static effdet_status parse_header_json(const char *path, const uint8_t *bytes, size_t len, json_object **out,
                                       effdet_error *err) {
    effdet_status s = EFFDET_OK;
    char *copy = malloc(len + 1);
    json_tokener *tok = json_tokener_new();
    json_object *root = NULL;
    if (!copy || !tok) {
        s = set_error(err, EFFDET_ERR_NOMEM, "%s: out of memory reading the header", path);
        goto fail;
    }
    memcpy(copy, bytes, len);
    copy[len] = '\0';
    root = json_tokener_parse_ex(tok, copy, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (!root || jerr != json_tokener_success) {
        const char *why =
            jerr == json_tokener_continue ? "unexpected end of header" : json_tokener_error_desc(jerr);
        s = set_error(err, EFFDET_ERR_FORMAT, "%s: header is not valid JSON (%s)", path, why);
        goto fail;
    }
    /* Trailing bytes after the document may only be the spaces that pad it to 8 bytes. */
    for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
        if (copy[i] != ' ' && copy[i] != '\t' && copy[i] != '\n' && copy[i] != '\r') {
            s = set_error(err, EFFDET_ERR_FORMAT, "%s: header is not valid JSON (garbage after the object)",
                          path);
            goto fail;
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        s = set_error(err, EFFDET_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto fail;
    }
    *out = root;
    root = NULL;
fail:
    json_object_put(root);
    if (tok) json_tokener_free(tok);
    free(copy);
    return s;
}

static int json_get_nonneg_int(json_object *o, int64_t *out) {
    if (!json_object_is_type(o, json_type_int)) return 0;
    int64_t v = json_object_get_int64(o);
    if (v < 0) return 0;
    *out = v;
    return 1;
}

static effdet_status parse_metadata(const char *path, json_object *meta, st_file *f, effdet_error *err) {
    if (!json_object_is_type(meta, json_type_object))
        return set_error(err, EFFDET_ERR_FORMAT, "%s: __metadata__ is not an object", path);
    json_object_object_foreach(meta, key, val) {
        if (!json_object_is_type(val, json_type_string))
            return set_error(err, EFFDET_ERR_FORMAT, "%s: __metadata__ field '%s' is not a string", path,
                             key);
        if (strcmp(key, "config") == 0) {
            free(f->metadata_config);
            f->metadata_config = strdup(json_object_get_string(val));
            if (!f->metadata_config)
                return set_error(err, EFFDET_ERR_NOMEM, "%s: out of memory reading __metadata__", path);
        }
    }
    return EFFDET_OK;
}

static effdet_status parse_shape(const char *path, const char *name, json_object *shape, st_tensor *t,
                                 effdet_error *err) {
    if (!shape || !json_object_is_type(shape, json_type_array))
        return set_error(err, EFFDET_ERR_FORMAT, "%s: tensor '%s': 'shape' missing or not an array", path,
                         name);
    size_t n = json_object_array_length(shape);
    if (n > ST_MAX_DIMS)
        return set_error(err, EFFDET_ERR_FORMAT, "%s: tensor '%s' has %zu dimensions (at most %d)", path,
                         name, n, ST_MAX_DIMS);
    t->ndim = (int)n;
    t->numel = 1;
    for (size_t i = 0; i < n; i++) {
        if (!json_get_nonneg_int(json_object_array_get_idx(shape, i), &t->shape[i]))
            return set_error(err, EFFDET_ERR_FORMAT,
                             "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, i);
        if (__builtin_mul_overflow(t->numel, t->shape[i], &t->numel))
            return set_error(err, EFFDET_ERR_FORMAT, "%s: tensor '%s': element count overflows", path, name);
    }
    return EFFDET_OK;
}

/* begin/end are relative to the data section; *begin is returned for the overlap check. */
static effdet_status parse_offsets(const char *path, const char *name, json_object *offs, uint64_t data_size,
                                   st_tensor *t, uint64_t *begin_out, effdet_error *err) {
    int64_t begin, end;
    if (!offs || !json_object_is_type(offs, json_type_array) || json_object_array_length(offs) != 2 ||
        !json_get_nonneg_int(json_object_array_get_idx(offs, 0), &begin) ||
        !json_get_nonneg_int(json_object_array_get_idx(offs, 1), &end))
        return set_error(err, EFFDET_ERR_FORMAT,
                         "%s: tensor '%s': 'data_offsets' must be [begin, end] non-negative integers", path,
                         name);
    if (end < begin)
        return set_error(err, EFFDET_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets end %lld is before begin %lld", path, name,
                         (long long)end, (long long)begin);
    if ((uint64_t)end > data_size)
        return set_error(err, EFFDET_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] run past the data section (%llu bytes)",
                         path, name, (long long)begin, (long long)end, (unsigned long long)data_size);
    int64_t expect;
    if (__builtin_mul_overflow(t->numel, (int64_t)dtype_size(t->dtype), &expect) || expect != end - begin)
        return set_error(err, EFFDET_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets span %lld bytes but %s x %lld elements needs %lld",
                         path, name, (long long)(end - begin), dtype_name(t->dtype), (long long)t->numel,
                         (long long)expect);
    t->nbytes = (size_t)(end - begin);
    *begin_out = (uint64_t)begin;
    return EFFDET_OK;
}

static effdet_status parse_tensor(const char *path, const char *name, json_object *entry, const uint8_t *data,
                                  uint64_t data_size, st_tensor *t, uint64_t *begin, effdet_error *err) {
    if (!json_object_is_type(entry, json_type_object))
        return set_error(err, EFFDET_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, name);
    json_object *dtype = NULL, *shape = NULL, *offs = NULL;
    json_object_object_get_ex(entry, "dtype", &dtype);
    json_object_object_get_ex(entry, "shape", &shape);
    json_object_object_get_ex(entry, "data_offsets", &offs);
    if (!dtype || !json_object_is_type(dtype, json_type_string))
        return set_error(err, EFFDET_ERR_FORMAT, "%s: tensor '%s': 'dtype' missing or not a string", path,
                         name);
    if (!parse_dtype(json_object_get_string(dtype), &t->dtype))
        return set_error(err, EFFDET_ERR_FORMAT,
                         "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", path, name,
                         json_object_get_string(dtype));
    effdet_status s = parse_shape(path, name, shape, t, err);
    if (s != EFFDET_OK) return s;
    s = parse_offsets(path, name, offs, data_size, t, begin, err);
    if (s != EFFDET_OK) return s;
    t->data = data + *begin;
    t->name = strdup(name);
    if (!t->name) return set_error(err, EFFDET_ERR_NOMEM, "%s: out of memory", path);
    return EFFDET_OK;
}

typedef struct {
    uint64_t begin;
    int index;
} span_key;

static int compare_span(const void *a, const void *b) {
    const span_key *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->index - y->index;
}

/* Two tensors sharing bytes would let a crafted file alias weights; the format forbids it,
 * so refuse and name both. Empty tensors occupy no bytes and cannot overlap anything. */
static effdet_status check_no_overlap(const char *path, const st_file *f, span_key *spans,
                                      effdet_error *err) {
    qsort(spans, (size_t)f->num_tensors, sizeof *spans, compare_span);
    const st_tensor *reach = NULL; /* the tensor that ends furthest among those seen */
    uint64_t reach_end = 0;
    for (int i = 0; i < f->num_tensors; i++) {
        const st_tensor *cur = &f->tensors[spans[i].index];
        if (cur->nbytes == 0) continue;
        if (reach && spans[i].begin < reach_end)
            return set_error(err, EFFDET_ERR_FORMAT,
                             "%s: tensors '%s' and '%s' have overlapping data_offsets", path, reach->name,
                             cur->name);
        reach = cur;
        reach_end = spans[i].begin + cur->nbytes;
    }
    return EFFDET_OK;
}

static effdet_status parse_tensors(const char *path, json_object *root, const uint8_t *data,
                                   uint64_t data_size, st_file *f, effdet_error *err) {
    effdet_status s = EFFDET_OK;
    int count = json_object_object_length(root);
    span_key *spans = NULL;
    f->tensors = calloc(count > 0 ? (size_t)count : 1, sizeof *f->tensors);
    spans = calloc(count > 0 ? (size_t)count : 1, sizeof *spans);
    if (!f->tensors || !spans) {
        s = set_error(err, EFFDET_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    json_object_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            s = parse_metadata(path, val, f, err);
        } else {
            st_tensor *t = &f->tensors[f->num_tensors];
            s = parse_tensor(path, key, val, data, data_size, t, &spans[f->num_tensors].begin, err);
            spans[f->num_tensors].index = f->num_tensors;
            if (t->name) f->num_tensors++; /* counted once owned, so st_close frees it */
        }
        if (s != EFFDET_OK) goto fail;
    }
    s = check_no_overlap(path, f, spans, err);
fail:
    free(spans);
    return s;
}

static effdet_status map_file(const char *path, st_file *f, effdet_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return set_error(err, EFFDET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    effdet_status s = EFFDET_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        s = set_error(err, EFFDET_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        s = set_error(err, EFFDET_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    if (st.st_size < 8) {
        s = set_error(err, EFFDET_ERR_FORMAT,
                      "%s: truncated: %lld bytes, shorter than the 8-byte header length", path,
                      (long long)st.st_size);
        goto done;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        s = set_error(err, EFFDET_ERR_IO, "%s: cannot mmap: %s", path, strerror(errno));
        goto done;
    }
    f->map = map;
    f->map_size = (size_t)st.st_size;
done:
    close(fd);
    return s;
}

effdet_status st_open(const char *path, st_file *f, effdet_error *err) {
    memset(f, 0, sizeof *f);
    json_object *root = NULL;
    effdet_status s = EFFDET_OK;
    f->path = strdup(path);
    if (!f->path) {
        s = set_error(err, EFFDET_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    s = map_file(path, f, err);
    if (s != EFFDET_OK) goto fail;

    const uint8_t *bytes = f->map;
    uint64_t header_len = read_u64_le(bytes);
    uint64_t after_prefix = f->map_size - 8;
    if (header_len > after_prefix) {
        s = set_error(err, EFFDET_ERR_FORMAT,
                      "%s: truncated: header length %llu runs past the end of the file (%zu bytes)", path,
                      (unsigned long long)header_len, f->map_size);
        goto fail;
    }
    if (header_len > ST_MAX_HEADER_BYTES) {
        s = set_error(err, EFFDET_ERR_FORMAT, "%s: header length %llu is absurd (limit %u)", path,
                      (unsigned long long)header_len, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    s = parse_header_json(path, bytes + 8, (size_t)header_len, &root, err);
    if (s != EFFDET_OK) goto fail;
    s = parse_tensors(path, root, bytes + 8 + header_len, after_prefix - header_len, f, err);
    if (s != EFFDET_OK) goto fail;
    json_object_put(root);
    return EFFDET_OK;
fail:
    json_object_put(root);
    st_close(f);
    return s;
}

void st_close(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->num_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->map_size);
    free(f->metadata_config);
    free(f->path);
    memset(f, 0, sizeof *f);
}

st_tensor *st_find(st_file *f, const char *name) {
    for (int i = 0; i < f->num_tensors; i++) {
        if (strcmp(f->tensors[i].name, name) == 0) {
            f->tensors[i].used = 1;
            return &f->tensors[i];
        }
    }
    return NULL;
}

/* IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Built bit by bit
 * rather than relying on _Float16 so it is exact on every compiler and target. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13); /* inf, or NaN keeping its payload */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13); /* rebias 15 -> 127 */
    } else if (mant == 0) {
        bits = sign; /* signed zero */
    } else {
        /* Subnormal half: value = mant * 2^-24; normalise it into a float32 normal. */
        int e = -1;
        do {
            mant <<= 1;
            e++;
        } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* bfloat16 is the top half of a float32. */
static float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

static uint16_t read_u16_le(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* The data section starts right after a header of arbitrary length, so tensor data has
 * no alignment guarantee: copy bytes, never cast the mapping to float*. */
static void widen_to_f32(const st_tensor *t, float *dst) {
    if (t->dtype == ST_F32) {
        memcpy(dst, t->data, t->nbytes);
        return;
    }
    for (int64_t i = 0; i < t->numel; i++) {
        uint16_t v = read_u16_le(t->data + 2 * i);
        dst[i] = t->dtype == ST_F16 ? half_to_float(v) : bf16_to_float(v);
    }
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static int shape_equals(const st_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

effdet_status st_read_f32(st_file *f, const char *name, int ndim, const int64_t *shape, float *dst,
                          effdet_error *err) {
    st_tensor *t = st_find(f, name);
    if (!t) return set_error(err, EFFDET_ERR_FORMAT, "%s: missing tensor '%s'", f->path, name);
    if (!shape_equals(t, ndim, shape)) {
        char have[160], want[160];
        format_shape(have, sizeof have, t->ndim, t->shape);
        format_shape(want, sizeof want, ndim, shape);
        return set_error(err, EFFDET_ERR_FORMAT, "%s: tensor '%s' has shape %s but the model expects %s",
                         f->path, name, have, want);
    }
    widen_to_f32(t, dst);
    return EFFDET_OK;
}

effdet_status st_check_all_used(const st_file *f, effdet_error *err) {
    for (int i = 0; i < f->num_tensors; i++)
        if (!f->tensors[i].used)
            return set_error(err, EFFDET_ERR_FORMAT,
                             "%s: unexpected tensor '%s' (not part of this architecture)", f->path,
                             f->tensors[i].name);
    return EFFDET_OK;
}
