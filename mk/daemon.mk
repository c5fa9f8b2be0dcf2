# effdetd: unit-test linkage, `make run`, `make install` / `uninstall`, `make fuzz`.

# The daemon's Check tests link the daemon sources they test (pure C, no libevent).
# errf.o is the parsers' shared message helper.
$(BUILD)/tests/test_daemon_config: $(BUILD)/daemon/config.o $(BUILD)/daemon/errf.o
$(BUILD)/tests/test_daemon_params: $(BUILD)/daemon/params.o $(BUILD)/daemon/errf.o
$(BUILD)/tests/test_daemon_multipart: $(BUILD)/daemon/multipart.o $(BUILD)/daemon/errf.o
$(BUILD)/tests/test_daemon_queue: $(BUILD)/daemon/queue.o
$(BUILD)/tests/test_daemon_metrics: $(BUILD)/daemon/metrics.o $(BUILD)/daemon/sbuf.o

# ------------------------------------------------------------------ make run
# Checks the Debian build dependencies (installs them with apt as root or via sudo,
# otherwise prints the apt command and stops), builds, and runs effdetd in the foreground
# on 127.0.0.1:8080 with MODEL, a weights file. Without MODEL it serves the named model
# MODEL_NAME (mk/model.mk; tf_efficientdet_d0 unless given), fetching it with `make model`
# when $(MODELS_DIR)/$(MODEL_NAME).safetensors is absent. When that fetch fails (no
# network), it serves the trained demo model shipped in the repository instead
# (models/shapes.safetensors: circles, squares and triangles; the page offers sample
# images for it) and says so.
#   make run
#   make run MODEL=../shared/reference/d0/weights.safetensors
#   make run MODEL_NAME=tf_efficientdet_d3
#   make run RUN_LISTEN=0.0.0.0:8080 RUN_ARGS="--workers 2 --api-key secret"
BUILD_DEPS := build-essential pkg-config python3 libopenblas-dev libjson-c-dev libjpeg62-turbo-dev libevent-dev
RUN_LISTEN ?= 127.0.0.1:8080
RUN_ARGS   ?=
DEMO_MODEL := models/shapes.safetensors
ifneq ($(MODEL),)
  RUN_MODEL := $(MODEL)
  RUN_FETCH := no
else
  # recursive: MODELS_DIR and MODEL_NAME come from mk/model.mk, read after this file
  RUN_MODEL = $(MODELS_DIR)/$(MODEL_NAME).safetensors
  RUN_FETCH := yes
endif

.PHONY: deps run install uninstall fuzz fuzz-build
deps:
	@if ! command -v dpkg >/dev/null; then \
	  echo "make run: not a Debian system; make sure these are installed: $(BUILD_DEPS)"; exit 0; fi; \
	missing=""; \
	for p in $(BUILD_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "Installing:$$missing"; apt-get update && apt-get install -y --no-install-recommends $$missing; \
	elif command -v sudo >/dev/null; then \
	  echo "Installing with sudo:$$missing"; sudo apt-get update && sudo apt-get install -y --no-install-recommends $$missing; \
	else \
	  echo "Missing build dependencies. Install them with:"; \
	  echo "  apt-get install$$missing"; exit 1; \
	fi

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/effdetd
	@model="$(RUN_MODEL)"; \
	if [ "$(RUN_FETCH)" = yes ] && [ ! -f "$$model" ]; then \
	  echo "make run: $$model is absent: make model"; \
	  if ! $(MAKE) --no-print-directory model; then \
	    echo "make run: could not fetch the COCO model (no network?): serving the DEMO model $(DEMO_MODEL) instead."; \
	    echo "make run: it finds only circles, squares and triangles (the page offers sample images);"; \
	    echo "make run: run 'make model' where the network is, then 'make run' again, for COCO D0 (80 kinds of objects)."; \
	    model="$(DEMO_MODEL)"; \
	  fi; \
	fi; \
	test -f "$$model" || { echo "make run: model $$model not found"; exit 1; }; \
	echo "effdetd on http://$(RUN_LISTEN)/ with $$model (Ctrl-C stops it)"; \
	exec $(BUILD)/effdetd --model "$$model" --listen $(RUN_LISTEN) $(RUN_ARGS)

# -------------------------------------------------------------- make install
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
DATADIR    ?= $(PREFIX)/share/effdetd
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system

install: $(BUILD)/effdetd $(BUILD)/effdet-detect $(BUILD)/effdet-eval
	install -Dm755 $(BUILD)/effdetd $(DESTDIR)$(BINDIR)/effdetd
	install -Dm755 $(BUILD)/effdet-detect $(DESTDIR)$(BINDIR)/effdet-detect
	install -Dm755 $(BUILD)/effdet-eval $(DESTDIR)$(BINDIR)/effdet-eval
	install -Dm644 man/effdet-eval.1 $(DESTDIR)$(MANDIR)/man1/effdet-eval.1
	@# An existing configuration is the administrator's: never overwrite it.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/effdetd/effdetd.conf ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/effdetd/effdetd.conf"; \
	else mkdir -p $(DESTDIR)$(SYSCONFDIR)/effdetd && \
	  sed 's|^# models_dir ""$$|models_dir /var/lib/effdetd/models|' config/effdetd.conf \
	    >$(DESTDIR)$(SYSCONFDIR)/effdetd/effdetd.conf && \
	  chmod 644 $(DESTDIR)$(SYSCONFDIR)/effdetd/effdetd.conf; fi
	install -Dm644 config/coco-labels.txt $(DESTDIR)$(DATADIR)/coco-labels.txt
	@mkdir -p $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/effdetd/|$(SYSCONFDIR)/effdetd/|g' \
	  systemd/effdetd.service >$(DESTDIR)$(UNITDIR)/effdetd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/effdetd.service
	install -Dm644 systemd/effdetd.socket $(DESTDIR)$(UNITDIR)/effdetd.socket
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/effdetd/|$(SYSCONFDIR)/effdetd/|g' \
	  systemd/effdetd@.service >$(DESTDIR)$(UNITDIR)/effdetd@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/effdetd@.service
	install -Dm644 man/effdetd.8 $(DESTDIR)$(MANDIR)/man8/effdetd.8
	install -Dm644 man/effdetd.conf.5 $(DESTDIR)$(MANDIR)/man5/effdetd.conf.5
	if [ -f man/effdet-detect.1 ]; then install -Dm644 man/effdet-detect.1 $(DESTDIR)$(MANDIR)/man1/effdet-detect.1; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/effdetd $(DESTDIR)$(BINDIR)/effdet-detect $(DESTDIR)$(BINDIR)/effdet-eval \
	  $(DESTDIR)$(MANDIR)/man1/effdet-eval.1 \
	  $(DESTDIR)$(DATADIR)/coco-labels.txt $(DESTDIR)$(UNITDIR)/effdetd.service \
	  $(DESTDIR)$(UNITDIR)/effdetd.socket $(DESTDIR)$(UNITDIR)/effdetd@.service $(DESTDIR)$(MANDIR)/man8/effdetd.8 \
	  $(DESTDIR)$(MANDIR)/man5/effdetd.conf.5 $(DESTDIR)$(MANDIR)/man1/effdet-detect.1
	-rmdir $(DESTDIR)$(DATADIR) 2>/dev/null
	@echo "left $(DESTDIR)$(SYSCONFDIR)/effdetd/effdetd.conf in place"

# ----------------------------------------------------------------- make fuzz
# libFuzzer targets for every parser that reads outside bytes. Built with clang whatever
# SANITIZE says (libFuzzer needs clang), into build/fuzz. `make fuzz FUZZ_SECONDS=600`
# runs each target that long (FUZZ_TIME is the old name, still accepted) from its seeds
# in fuzz/corpus/<target>, growing build/fuzz/corpus-<target>.
#   multipart, params  daemon/multipart.c, daemon/params.c (pure C)
#   config             daemon/config.c
#   jpeg               JPEG probe + decode + letterbox (lib/image/jpeg_decode.c, lib/image/letterbox.c)
#   safetensors        safetensors container + model loader (lib/model/safetensors.c, arch_metadata.c, model.c)
#   http               the whole request path of a real effdetd on loopback, up to the queue and a worker
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_COPTS   := -g -O1 -std=c11 -D_GNU_SOURCE -pthread $(ARCH_FLAGS) -Ilib/include -Ilib -Idaemon \
                $(PKG_CFLAGS) $(EVENT_CFLAGS)
FUZZ_FLAGS   ?= $(FUZZ_COPTS) -fsanitize=fuzzer $(FUZZ_SAN)
FUZZ_TIME    ?= 60
FUZZ_SECONDS ?= $(FUZZ_TIME)
FUZZ_TARGETS := multipart params config jpeg safetensors http coco_annotations
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
# The kernels are compiled once per ISA level, as in the library (mk/kernels.mk), so the
# fuzzed library dispatches exactly as the real one does.
FUZZ_KERNEL_OBJ := $(foreach i,$(KERNEL_ISAS),$(patsubst lib/%.c,build/fuzz/obj/lib/isa-$(i)/%.o,$(KERNEL_SRC)))
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o) $(FUZZ_KERNEL_OBJ)
FUZZ_DMN_OBJ := $(patsubst %.c,build/fuzz/obj/%.o,$(filter-out daemon/main.c,$(DAEMON_SRC)))

# -MMD: the objects depend on the headers they include (the Makefile reads build/**/*.d),
# or a changed struct leaves stale objects that disagree about its layout.
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_COPTS) -MMD -MP -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@

# -fvect-cost-model is GCC's; clang vectorises these loops without being asked.
define fuzz_kernel_rule
build/fuzz/obj/lib/isa-$(1)/%.o: lib/%.c
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_COPTS) -MMD -MP -fsanitize=fuzzer-no-link $$(FUZZ_SAN) \
	  $(filter-out -fvect-cost-model=%,$(call KERNEL_CFLAGS,$(1))) -c $$< -o $$@
endef
$(foreach i,$(KERNEL_ISAS),$(eval $(call fuzz_kernel_rule,$(i))))

build/fuzz/libeffdet.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

build/fuzz/fuzz_multipart: fuzz/fuzz_multipart.c daemon/multipart.c daemon/multipart.h daemon/errf.c daemon/errf.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/fuzz_multipart.c daemon/multipart.c daemon/errf.c

build/fuzz/fuzz_params: fuzz/fuzz_params.c daemon/params.c daemon/params.h daemon/errf.c daemon/errf.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/fuzz_params.c daemon/params.c daemon/errf.c

build/fuzz/fuzz_config: fuzz/fuzz_config.c daemon/config.c daemon/config.h daemon/errf.c daemon/errf.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/fuzz_config.c daemon/config.c daemon/errf.c -lm

build/fuzz/fuzz_jpeg build/fuzz/fuzz_safetensors: build/fuzz/fuzz_%: fuzz/fuzz_%.c build/fuzz/libeffdet.a
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS) -lm

build/fuzz/fuzz_http: fuzz/fuzz_http.c $(FUZZ_DMN_OBJ) build/fuzz/libeffdet.a
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ $(EVENT_LIBS) $(PKG_LIBS) -lm

fuzz-build: $(FUZZ_BINS)

# fuzz_http starts worker threads whose allocations outlive an input: leak checking
# per input would report them, so it runs with -detect_leaks=0 (ASan still checks
# every access; the daemon's leak checks are the integration tests under ASan).
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  extra=""; [ $$t = http ] && extra="-detect_leaks=0"; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 $$extra \
	    -artifact_prefix=build/fuzz/crash-$$t- build/fuzz/corpus-$$t fuzz/corpus/$$t >build/fuzz/log-$$t 2>&1; \
	  rc=$$?; grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|^#[0-9]+ +DONE' build/fuzz/log-$$t; \
	  [ $$rc -eq 0 ] || { tail -60 build/fuzz/log-$$t; exit 1; }; \
	done
