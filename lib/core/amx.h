/*
 * Internal: whether this process runs a bf16 model's 1x1 convs on AMX tiles
 * (op_pwconv_amx) instead of AVX512_BF16's vdpbf16ps (op_pwconv_bf16). Both compute
 * the same thing; the tiles are the faster unit where they exist.
 *
 * Yes only when all of these hold, checked in this order:
 *   - EFFDET_AMX is not "0" / "off" (a switch for A/B runs and an escape hatch),
 *   - the kernel level has the AMX kernel (avx512 only),
 *   - CPUID lists AMX-TILE and AMX-BF16 and XCR0 enables the tile state; the avx512
 *     level with AVX512_BF16 is there too, and palette 1 (CPUID 0x1D) has 8 tiles of
 *     16 rows x 64 bytes,
 *   - Linux grants this process the tile data state: arch_prctl(ARCH_REQ_XCOMP_PERM,
 *     XFEATURE_XTILEDATA), without which the first tile instruction kills the process,
 *   - a self-test: the AMX kernel's output on a small fixed problem (every tail: rows,
 *     pairs, columns) agrees with the vdpbf16ps kernel's within fp32 summation error.
 * Otherwise *why says which failed, in a sentence for a log line.
 */
#ifndef EFFDET_CORE_AMX_H
#define EFFDET_CORE_AMX_H

#include "ops/kernels.h"

int amx_usable(const kernel_table *k, const char **why);

#endif
