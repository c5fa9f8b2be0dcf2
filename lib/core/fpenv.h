/*
 * Internal: the floating-point environment the kernels run in. Subnormal floats (below
 * 1.2e-38) take a microcode assist on x86 that costs ~100x a normal multiply-add; a
 * black or noisy frame drives many activations there (swish of a large negative value,
 * products of small weights), and the forward pass became 2.5-3x slower (measured on a
 * Xeon: 60 -> 165 ms on a black frame). The network never needs them: every value it
 * computes that is that small is zero at fp32's precision relative to the tensor.
 * So every thread that runs kernels sets MXCSR.FTZ (results that would be subnormal are
 * 0) and MXCSR.DAZ (subnormal inputs read as 0): the pool's threads once when they
 * start (a new thread inherits its creator's MXCSR, so they set the whole mode), the
 * caller's thread around each public call that computes (fpenv_enter / fpenv_leave),
 * putting the caller's own MXCSR back afterwards.
 */
#ifndef EFFDET_FPENV_H
#define EFFDET_FPENV_H

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>

#define FPENV_FTZ 0x8000u /* MXCSR bit 15: flush to zero */
#define FPENV_DAZ 0x0040u /* MXCSR bit 6: denormals are zero */
/* The whole mode the kernels run in: every exception masked (0x1f80: an exp overflowing
 * to inf must not trap even if the host unmasked it), round to nearest (the caller's
 * rounding mode must not change our results), FTZ and DAZ. */
#define FPENV_KERNEL_MODE (0x1f80u | FPENV_FTZ | FPENV_DAZ)

typedef unsigned fpenv_saved;

/* Enter the kernel mode; returns the caller's MXCSR for fpenv_leave. Writing MXCSR
 * costs a pipeline sync (tens of cycles), so skip the write when it is already set. */
static inline fpenv_saved fpenv_enter(void) {
    unsigned old = _mm_getcsr();
    if ((old & ~0x3fu) != FPENV_KERNEL_MODE) _mm_setcsr(FPENV_KERNEL_MODE);
    return old;
}

/* Restore the caller's MXCSR as it was (modes and sticky exception flags). */
static inline void fpenv_leave(fpenv_saved old) {
    if (_mm_getcsr() != old) _mm_setcsr(old);
}
#else
typedef int fpenv_saved;
static inline fpenv_saved fpenv_enter(void) { return 0; }
static inline void fpenv_leave(fpenv_saved old) { (void)old; }
#endif

#endif
