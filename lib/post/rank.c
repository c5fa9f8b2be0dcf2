/* The descending key sort of rank.h. */
#include <stdint.h>

#include "post/rank.h"

void sort_keys_desc(uint64_t *keys, int n, uint64_t *tmp) {
    /* LSD radix sort on the complemented key (ascending complement = descending key);
     * 8 stable byte passes; an even count leaves the result back in keys. */
    uint64_t *src = keys, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 8) {
        int count[257] = {0};
        for (int i = 0; i < n; i++) count[((~src[i]) >> shift & 0xff) + 1]++;
        for (int b = 0; b < 256; b++) count[b + 1] += count[b];
        for (int i = 0; i < n; i++) dst[count[(~src[i]) >> shift & 0xff]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
}
