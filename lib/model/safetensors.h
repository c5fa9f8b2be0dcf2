/*
 * Internal: a read-only view of a .safetensors file.
 *
 * The file is mmapped; the header is parsed and validated up front with
 * overflow-safe arithmetic (header length inside the file, every tensor's
 * data_offsets inside the data section, in order, not overlapping, size equal to
 * dtype size x product(shape)). F32 tensors are used in place; F16 and BF16 are
 * widened to F32 on demand by st_read_f32(). Every lookup marks the tensor as used, so
 * the model loader can reject files that carry tensors it does not expect.
 */
#ifndef EFFDET_SAFETENSORS_H
#define EFFDET_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "effdet.h"

#define ST_MAX_DIMS 8

typedef enum { ST_F32, ST_F16, ST_BF16 } st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* inside the mapping */
    size_t nbytes;
    int used;
} st_tensor;

typedef struct {
    char *path;
    void *map;
    size_t map_size;
    st_tensor *tensors;
    int num_tensors;
    char *metadata_config; /* __metadata__.config string, or NULL when absent */
} st_file;

/* Map and validate. On failure nothing stays allocated and err names the file and,
 * where it applies, the tensor. */
effdet_status st_open(const char *path, st_file *f, effdet_error *err);
void st_close(st_file *f);

/* Find a tensor by name and mark it used; NULL when absent. */
st_tensor *st_find(st_file *f, const char *name);

/* Look up `name`, check that its shape equals shape[0..ndim) and copy it as float32 into
 * dst (widening F16/BF16). Errors name the file and the tensor: missing, wrong shape. */
effdet_status st_read_f32(st_file *f, const char *name, int ndim, const int64_t *shape, float *dst,
                          effdet_error *err);

/* Error naming the first tensor never looked up (a file with tensors the model does not
 * use is the wrong file for this architecture). EFFDET_OK when all were used. */
effdet_status st_check_all_used(const st_file *f, effdet_error *err);

#endif
