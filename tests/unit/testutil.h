/* Helpers shared by the Check test binaries: fixture files and tensor comparison. */
#ifndef EFFDET_TESTUTIL_H
#define EFFDET_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Read a whole file; NULL when it cannot be read. *len gets the size. free() the result. */
void *tu_read_file(const char *path, size_t *len);

/* Directory of the shared reference fixtures (../shared/reference, or $EFFDET_SHARED).
 * When it is absent: prints a loud notice and returns NULL if EFFDET_SKIP_SHARED=1
 * (callers then skip), otherwise fails the current test. */
const char *tu_shared_dir(void);

/* Path of a fixture in tests/fixtures/ (static buffer). */
const char *tu_fixture(const char *name);

/* max|a - b| / max|b| over n values (0 when b is all zeros and a == b). */
double tu_rel_err(const float *a, const float *b, size_t n);

/* NCHW (N=1) -> NHWC, and back. */
void tu_nchw_to_nhwc(const float *src, int c, int h, int w, float *dst);
void tu_nhwc_to_nchw(const float *src, int h, int w, int c, float *dst);

/* Run a suite (CK_NORMAL output: its summary line is what CI reads); the process exit
 * status: 0 when every test passed. */
struct Suite;
int tu_run_suite(struct Suite *s);

/* Deterministic pseudo-random floats in [lo, hi). */
void tu_fill_random(float *x, size_t n, float lo, float hi, uint32_t *state);

/* n such floats in a new buffer (fails the test when out of memory); free() it. */
float *tu_random_floats(size_t n, float lo, float hi, uint32_t *state);

#endif
