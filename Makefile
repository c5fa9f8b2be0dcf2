# effdetd — build, test, lint, install.  `make help` lists the targets.
.DEFAULT_GOAL := all

PREFIX     ?= /usr/local
DESTDIR    ?=
CC         ?= cc
# A portable binary: everything is built for x86-64-v2, and the compute kernels are
# built once more per instruction-set level and chosen at run time from CPUID
# (mk/kernels.mk, lib/core/cpu.c). ARCH_FLAGS=-march=native still works (the kernels keep
# their per-level flags, so every level stays selectable).
ARCH_FLAGS ?= $(if $(filter x86_64%,$(shell $(CC) -dumpmachine)),-march=x86-64-v2)
OPT        ?= -O2
SANITIZE   ?=

PKGS      := openblas json-c libjpeg
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)
EVENT_CFLAGS := $(shell pkg-config --cflags libevent libevent_pthreads 2>/dev/null)
EVENT_LIBS   := $(shell pkg-config --libs libevent libevent_pthreads 2>/dev/null)

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS  ?= $(OPT) -g
# Everything sees the public headers (lib/include) only; the library's own objects, the
# Check tests and bench/ops-bench.c also see its internal ones (lib/<part>/x.h, included
# as "part/x.h").
CFLAGS  += -std=c11 -D_GNU_SOURCE -pthread $(ARCH_FLAGS) $(WARN) -MMD -MP -Ilib/include $(PKG_CFLAGS)
LIB_INTERNAL_CFLAGS := -Ilib
LDLIBS  += $(PKG_LIBS) -lm -pthread

ifneq ($(SANITIZE),)
  BUILD   ?= build/san
  CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=$(SANITIZE)
else
  BUILD   ?= build
endif

# The kernel files are compiled once per ISA level (mk/kernels.mk defines KERNEL_OBJ).
KERNEL_SRC := $(wildcard lib/ops/op_*.c) lib/ops/kernels_isa.c
include mk/kernels.mk
LIB_SRC    := $(filter-out $(KERNEL_SRC),$(wildcard lib/*/*.c))
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o) $(KERNEL_OBJ)
LIB_A      := $(BUILD)/libeffdet.a
DAEMON_SRC := $(wildcard daemon/*.c)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/%.o)
# Check unit tests: tests/unit/test_X.c -> $(BUILD)/tests/unit/test_X.o -> $(BUILD)/tests/test_X.
# tests/unit/test_kernels.c tests the kernels directly: one binary per ISA level (mk/kernels.mk).
TEST_SRC   := $(filter-out tests/unit/test_kernels.c,$(wildcard tests/unit/test_*.c))
TEST_BIN   := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%) $(KERNEL_TEST_BIN)
TESTUTIL_OBJ := $(BUILD)/tests/unit/testutil.o

BINS := $(BUILD)/effdet-detect $(BUILD)/effdet-bench $(BUILD)/effdet-eval
ifneq ($(DAEMON_SRC),)
  BINS += $(BUILD)/effdetd
endif

.PHONY: all check lint format install clean help tests
all: $(BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LIB_INTERNAL_CFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/effdet-detect: $(BUILD)/tools/effdet-detect.o $(LIB_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/effdet-bench: $(BUILD)/bench/effdet-bench.o $(LIB_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/effdet-eval: $(BUILD)/tools/effdet-eval.o $(BUILD)/tools/coco_eval.o $(LIB_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/effdetd: $(DAEMON_OBJ) $(LIB_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(EVENT_LIBS) $(LDLIBS)

$(BUILD)/daemon/%.o: daemon/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EVENT_CFLAGS) -c $< -o $@

$(BUILD)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LIB_INTERNAL_CFLAGS) $(CHECK_CFLAGS) -c $< -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(TESTUTIL_OBJ) $(LIB_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

tests: $(TEST_BIN) $(BINS)

# Runs every unit test binary and every integration test (tests/run-tests.sh); prints
# each suite's summary and a total.
check: tests
	@BUILD=$(BUILD) KERNEL_ISAS="$(KERNEL_ISAS)" tests/run-tests.sh

# ctuuninitvar: every effdet_error* is an output parameter (written, never read first);
# cppcheck's cross-file check flags callers that pass an uninitialised one.
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance --suppress=ctuuninitvar \
	  --std=c11 -DEFFDET_KERNEL_ISA=baseline --inline-suppr -Ilib/include -Ilib lib tools bench daemon tests
	clang-tidy --quiet $(LIB_SRC) -- -std=c11 -D_GNU_SOURCE -Ilib/include -Ilib $(PKG_CFLAGS)
	clang-tidy --quiet tools/*.c $(filter-out bench/ops-bench.c,$(wildcard bench/*.c)) $(DAEMON_SRC) -- \
	  -std=c11 -D_GNU_SOURCE -Ilib/include $(PKG_CFLAGS) $(EVENT_CFLAGS)
	clang-tidy --quiet $(KERNEL_SRC) bench/ops-bench.c -- -std=c11 -D_GNU_SOURCE $(KERNEL_LINT_FLAGS) -Ilib/include -Ilib $(PKG_CFLAGS)

format:
	clang-format -i lib/*/*.c lib/*/*.h lib/include/*.h tools/*.c bench/*.c tests/unit/*.c tests/unit/*.h $(wildcard daemon/*.[ch])

clean:
	rm -rf build

help:
	@echo "make            build libeffdet, effdet-detect, effdet-bench, effdet-eval (and effdetd)"
	@echo "make check      build and run every test (SANITIZE=address,undefined for ASan/UBSan)"
	@echo "make lint       cppcheck + clang-tidy"
	@echo "make install    PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)"

-include $(shell find build -name '*.d' 2>/dev/null)

# Feature-specific rules (model fetching, daemon install, fuzzing, ...) live in mk/.
-include $(filter-out mk/kernels.mk,$(wildcard mk/*.mk))
