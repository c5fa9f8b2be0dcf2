/* multipart/form-data (RFC 7578) parser over a complete body held in memory. Parts point
 * into the body (no copies). No libevent, no engine: fuzzed on its own. */
#ifndef EFFDETD_MULTIPART_H
#define EFFDETD_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#define MP_MAX_BOUNDARY 70       /* RFC 2046 */
#define MP_MAX_PART_HEADERS 4096 /* bytes of headers per part */

typedef struct {
    char name[64];
    char filename[256];
    char content_type[128];
    int has_filename;
    const uint8_t *data;
    size_t len;
} mp_part;

/* Boundary parameter of a multipart/form-data Content-Type. -1 (with a message) when the
 * type is not multipart/form-data or the boundary is missing or invalid. */
int multipart_boundary(const char *content_type, char *out, size_t cap, char *err, size_t errlen);

/* Split body into parts (at most max_parts). -1 with a message on malformed input:
 * missing opening/closing boundary, part headers over MP_MAX_PART_HEADERS, a part
 * without Content-Disposition name, too many parts. */
int multipart_parse(const uint8_t *body, size_t len, const char *boundary, mp_part *parts, int max_parts,
                    int *nparts, char *err, size_t errlen);

#endif
