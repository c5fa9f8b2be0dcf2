/* libFuzzer target: the safetensors container (header JSON, dtypes, shapes, offsets)
 * and the model loader on top of it (architecture metadata, tensor shapes, labels), as
 * a SIGHUP reload meets a model file. The bytes go to a memfd opened by path, the way
 * the daemon opens a file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "effdet.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz.safetensors", 0);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) break;
        off += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    effdet_error e = {{0}};
    st_file f;
    if (st_open(path, &f, &e) == EFFDET_OK) {
        for (int i = 0; i < f.num_tensors; i++)
            if (!f.tensors[i].name ||
                (size_t)(f.tensors[i].data - (const uint8_t *)f.map) + f.tensors[i].nbytes > f.map_size)
                abort(); /* every tensor lies inside the file */
        st_close(&f);
    }
    effdet_model *m = NULL;
    if (effdet_model_load(path, &m, &e) == EFFDET_OK) {
        const effdet_info *inf = effdet_model_info(m);
        if (inf->num_classes <= 0 || inf->input_w <= 0 || inf->input_h <= 0) abort();
        effdet_model_free(m);
    }
    close(fd);
    return 0;
}
