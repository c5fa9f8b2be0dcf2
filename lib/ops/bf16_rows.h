/*
 * Internal to the bf16 1x1 kernels (op_pwconv_bf16.c, op_pwconv_amx.c): their job, and
 * the rounding of input rows to bf16 that both do before multiplying. Only the avx512
 * level includes it.
 */
#ifndef EFFDET_BF16_ROWS_H
#define EFFDET_BF16_ROWS_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/kernels.h"

/* The functions that use AVX512_BF16 instructions, on top of the level's x86-64-v4 (an
 * attribute rather than a file-wide flag or pragma: GCC and clang, the fuzz build's
 * compiler, both honour it, and nothing else in a file can pick up the extension). */
#define BF16_FN __attribute__((target("avx512bf16")))

/* out = act(in . w + bias) with w in kernels.h's packed layout. kp: the pairs each
 * kernel runs over, which is also its rounded rows' length in 32-bit words
 * (bf16_pairs for vdpbf16ps, bf16_pairs_padded for the tiles). */
typedef struct {
    const float *in;
    const uint16_t *w;
    const float *bias;
    float *out;
    int cin, cout, kp, cout16;
    act_kind act;
} bf16_job;

static inline bf16_job bf16_job_of(const tensor *in, const uint16_t *wbf, const float *bias, act_kind act,
                                   tensor *out, int kp) {
    bf16_job j = {in->data, wbf, bias, out->data, in->c, out->c, kp, bf16_cout_padded(out->c), act};
    return j;
}

/* n floats from src to bf16 (nearest even, vcvtneps2bf16) at dst. */
BF16_FN static inline void bf16_round_span(const float *src, size_t n, uint16_t *dst) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)h);
    }
}

#endif
