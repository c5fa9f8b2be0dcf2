/* libFuzzer target: multipart/form-data parsing. Input = a Content-Type header line,
 * '\n', then the body. Checks that every part lies inside the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl || nl - data > 1024) return 0;
    char ctype[1025];
    memcpy(ctype, data, (size_t)(nl - data));
    ctype[nl - data] = '\0';
    const uint8_t *body = nl + 1;
    size_t len = size - (size_t)(body - data);
    /* A copy of exactly len bytes, so ASan sees any read past the body. */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    memcpy(copy, body, len);
    char boundary[MP_MAX_BOUNDARY + 1], err[256];
    if (multipart_boundary(ctype, boundary, sizeof boundary, err, sizeof err) == 0) {
        mp_part parts[8];
        int n = -1;
        if (multipart_parse(copy, len, boundary, parts, 8, &n, err, sizeof err) == 0) {
            if (n < 0 || n > 8) abort();
            for (int i = 0; i < n; i++) {
                if (parts[i].data < copy || parts[i].data + parts[i].len > copy + len) abort();
                if (!parts[i].name[0] || strlen(parts[i].name) >= sizeof parts[i].name) abort();
            }
        } else if (!err[0]) {
            abort(); /* every failure explains itself */
        }
    }
    free(copy);
    return 0;
}
