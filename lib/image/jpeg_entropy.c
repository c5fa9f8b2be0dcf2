/*
 * Huffman tables for the split decoder's entropy decoding (jpeg_entropy.h): the
 * canonical codes of a DHT (JPEG Annex C), a fast table indexed by the next
 * HUFF_FAST_BITS bits, and libjpeg's maxcode/valoffset arrays for longer codes.
 */
#include "image/jpeg_entropy.h"

/* The fast-table entry for code `code` of length `len` <= HUFF_FAST_BITS carrying
 * symbol `sym`, at table index `idx` (whose low bits follow the code). AC codes whose
 * extra bits also fit in the index are stored decoded (HUFF_COMBINED). */
static uint32_t fast_entry(int sym, int len, unsigned idx, int is_dc) {
    int s = sym & 15, run = sym >> 4;
    if (!is_dc && s && len + s <= HUFF_FAST_BITS) {
        unsigned extra = idx >> (HUFF_FAST_BITS - len - s) & ((1u << s) - 1);
        int32_t v = huff_extend(extra, s);
        return (uint32_t)v << 16 | (uint32_t)run << 8 | HUFF_COMBINED | (uint32_t)(len + s);
    }
    return (uint32_t)sym << 8 | (uint32_t)len;
}

int huff_table_build(huff_table *t, const uint8_t bits[17], const uint8_t *huffval, int is_dc) {
    memset(t, 0, sizeof *t);
    int count = 0;
    for (int l = 1; l <= 16; l++) count += bits[l];
    if (count > 256) return 0;
    memcpy(t->huffval, huffval, (size_t)count);
    if (is_dc)
        for (int i = 0; i < count; i++)
            if (huffval[i] > 15) return 0; /* libjpeg: JERR_BAD_HUFF_TABLE */
    /* Canonical codes, length by length; a code may not be all ones (libjpeg's check) */
    int32_t code = 0;
    int p = 0;
    for (int l = 1; l <= 16; l++) {
        if (bits[l]) {
            t->valoffset[l] = p - code;
            for (int i = 0; i < bits[l]; i++, p++, code++)
                if (l <= HUFF_FAST_BITS) {
                    unsigned shift = (unsigned)(HUFF_FAST_BITS - l);
                    for (unsigned j = 0; j < 1u << shift; j++) {
                        unsigned idx = (unsigned)code << shift | j;
                        t->fast[idx] = fast_entry(huffval[p], l, idx, is_dc);
                    }
                }
            t->maxcode[l] = code - 1;
        } else {
            t->maxcode[l] = -1;
        }
        if (code >= (int32_t)1 << l) return 0;
        code <<= 1;
    }
    t->maxcode[17] = 0x7FFFFFFF;
    return 1;
}
