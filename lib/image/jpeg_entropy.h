/*
 * Internal: baseline Huffman decoding of one MCU from any bit position of the
 * un-stuffed entropy data, for the split decoder (jpeg_split.c).
 *
 * It parses exactly as libjpeg-turbo's decoder does on valid data, and fails (returns 0)
 * wherever libjpeg-turbo would either warn or quietly invent something: a code that is
 * no code of the table (its fast path decodes it as symbol 0), a coefficient past
 * index 63 (it stores it at 63), bits needed past the end of the data (it pads with
 * zeros). A failure only sends the file to the sequential decoder, so being stricter
 * than libjpeg costs speed, never pixels.
 *
 * Decoding may start at any bit. The buffer must have JPEG_ENTROPY_PAD zero bytes
 * after its end, which covers the reads of one whole MCU before the end-of-data check.
 */
#ifndef EFFDET_JPEG_ENTROPY_H
#define EFFDET_JPEG_ENTROPY_H

#include <stdint.h>
#include <string.h>

#define HUFF_FAST_BITS 11
#define JPEG_MAX_BLOCKS_IN_MCU 10
/* One MCU reads at most 10 blocks x 64 symbols x 32 bits (+ 8 bytes) before the end check. */
#define JPEG_ENTROPY_PAD (JPEG_MAX_BLOCKS_IN_MCU * 64 * 4 + 8)

/* A fast-table entry: 0 = the code is longer than HUFF_FAST_BITS (slow path). Otherwise
 * bits 0-4 hold the bits consumed and bits 5-6 are zero, so the entry itself is the
 * shift count (a 64-bit shift reads only the low 6 bits: no masking on the decoder's
 * critical path). For a "combined" AC entry (bit 7) the code and its extra bits both
 * fit, bits 8-11 hold the zero run and bits 16-31 the coefficient; else bits 8-15 hold
 * the symbol. */
#define HUFF_COMBINED 0x80u

typedef struct {
    uint32_t fast[1 << HUFF_FAST_BITS];
    int32_t maxcode[18]; /* largest code of each length, -1 if none; [17] sentinel */
    int32_t valoffset[18];
    uint8_t huffval[256];
} huff_table;

/* One block of the MCU: its component and tables, and the coefficients its IDCT reads
 * (bit i = natural index i; the others are parsed and dropped). */
typedef struct {
    int comp;
    const huff_table *dc, *ac;
    uint64_t keep;
} mcu_block;

typedef struct {
    int nblocks;
    mcu_block b[JPEG_MAX_BLOCKS_IN_MCU];
} mcu_layout;

/* Build from a DHT's counts (bits[1..16]) and symbols; 0 when libjpeg would refuse the
 * table (too many symbols, a code that does not fit its length, a DC category > 15). */
int huff_table_build(huff_table *t, const uint8_t bits[17], const uint8_t *huffval, int is_dc);

/* The code at the head of `bits` when it is longer than the fast table: its symbol,
 * with *len set; -1 when no code of the table matches (libjpeg's "bad Huffman code"). */
static inline int huff_decode_slow(const huff_table *t, uint32_t bits, int *len) {
    for (int l = HUFF_FAST_BITS + 1; l <= 16; l++) {
        int32_t code = (int32_t)(bits >> (32 - l));
        if (code <= t->maxcode[l]) {
            *len = l;
            return t->huffval[(code + t->valoffset[l]) & 0xFF];
        }
    }
    return -1;
}

/* Figure F.12: s extra bits v as a signed value. */
static inline int32_t huff_extend(uint32_t v, int s) {
    return v < (1u << (s - 1)) ? (int32_t)v - (int32_t)(1u << s) + 1 : (int32_t)v;
}

/* Output of the MCU decoder, per block: the DC value (predictor applied), then each
 * kept nonzero AC coefficient as value * 256 + natural index (1..63), then 0. */
typedef int32_t coef_entry;
#define MCU_MAX_ENTRIES (JPEG_MAX_BLOCKS_IN_MCU * 66)

/* A most-significant-first bit reader: `buf` holds the next `n` bits of the data at
 * its top; bytes before `next` are consumed or in buf. refill() leaves 56..63 bits
 * (a branch-free refill: it ORs in the next 8 bytes, counting only whole ones). */
typedef struct {
    const uint8_t *next;
    uint64_t buf;
    int n;
} bit_reader;

static inline void br_refill(bit_reader *r) {
    uint64_t w;
    memcpy(&w, r->next, 8);
    r->buf |= __builtin_bswap64(w) >> r->n;
    r->next += (63 - r->n) >> 3;
    r->n |= 56;
}

static inline void br_consume(bit_reader *r, int k) {
    r->buf <<= k;
    r->n -= k;
}

/* The fast-table index: the top HUFF_FAST_BITS bits (one shift). */
static inline uint32_t fast_index(uint64_t head) {
    return (uint32_t)(head >> (64 - HUFF_FAST_BITS));
}

/* br_consume of a fast-table entry's length (bits 0-4, bits 5-6 zero). */
static inline void br_consume_entry(bit_reader *r, uint32_t e) {
    r->buf <<= e & 63;
    r->n -= (int)(e & 31);
}

/* Decode one MCU at *pos with DC predictors pred[], appending to out. Returns the
 * number of entries written, or 0 on a bad code or a coefficient index past 63 (*pos
 * is then meaningless). The caller checks *pos against the end of the data. */
static inline int decode_mcu(const mcu_layout *lo, const uint8_t *data, uint64_t *pos, int32_t *pred,
                             coef_entry *out) {
    static const uint8_t natural[64] = {0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,
                                        12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
                                        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
                                        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};
    bit_reader r = {data + (*pos >> 3), 0, 0};
    br_refill(&r);
    br_consume(&r, (int)(*pos & 7));
    coef_entry *o = out;
    for (int bi = 0; bi < lo->nblocks; bi++) {
        const mcu_block *b = &lo->b[bi];
        /* DC: a category, then that many bits of difference */
        /* The lookup reads the buffer before the refill, which only ORs bits in below
         * the ones it holds: every symbol consumes at most 16 + 15 bits of a refilled
         * buffer (>= 56), so >= 25 valid bits are always there, enough for any code,
         * and the table load no longer waits for the refill. */
        uint64_t head = r.buf;
        br_refill(&r);
        uint32_t e = b->dc->fast[fast_index(head)];
        int s, len;
        if (e) {
            s = (int)(e >> 8 & 0xFF), len = (int)(e & 31);
        } else {
            s = huff_decode_slow(b->dc, (uint32_t)(head >> 32), &len);
            if (s < 0) return 0;
        }
        br_consume(&r, len);
        int32_t diff = 0;
        if (s) {
            diff = huff_extend((uint32_t)(r.buf >> (64 - s)), s);
            br_consume(&r, s);
        }
        /* |pred| stays below 2^30: a larger one is garbage (and would overflow) */
        int32_t dc = pred[b->comp] + diff;
        if (dc > (1 << 30) || dc < -(1 << 30)) return 0;
        pred[b->comp] = dc;
        *o++ = dc;
        /* AC: (run, size) symbols until EOB or index 63, as libjpeg's loop */
        const huff_table *ac = b->ac;
        const uint64_t keep = b->keep;
        for (int k = 1; k < 64;) {
            head = r.buf;
            br_refill(&r); /* every symbol: cheaper than a data-dependent branch */
            e = ac->fast[fast_index(head)];
            if (e & HUFF_COMBINED) {
                k += (int)(e >> 8 & 15);
                if (k > 63) return 0;
                br_consume_entry(&r, e);
                int z = natural[k];
                /* written always, kept only where the IDCT reads it: no branch to mispredict */
                *o = ((int32_t)e >> 16) * 256 + z; /* value in bits 16-31 */
                o += keep >> z & 1;
                k++;
                continue;
            }
            int rs;
            if (e) {
                rs = (int)(e >> 8 & 0xFF), len = (int)(e & 31);
            } else {
                rs = huff_decode_slow(ac, (uint32_t)(head >> 32), &len);
                if (rs < 0) return 0;
            }
            br_consume(&r, len);
            int run = rs >> 4;
            s = rs & 15;
            if (s) {
                k += run;
                if (k > 63) return 0;
                int32_t v = huff_extend((uint32_t)(r.buf >> (64 - s)), s);
                br_consume(&r, s);
                int z = natural[k];
                *o = v * 256 + z;
                o += keep >> z & 1;
                k++;
            } else {
                if (run != 15) break; /* EOB (libjpeg ends the block on any run with size 0 but ZRL) */
                k += 16;              /* ZRL; past 63 it ends the block, as in libjpeg */
            }
        }
        *o++ = 0;
    }
    *pos = (uint64_t)(r.next - data) * 8 - (uint64_t)r.n;
    return (int)(o - out);
}

#endif
