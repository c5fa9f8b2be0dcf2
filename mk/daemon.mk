# effdetd: unit-test linkage, `make run`, `make install` / `uninstall`, `make fuzz`.

# The daemon's Check tests link the daemon sources they test (pure C, no libevent).
$(BUILD)/tests/test_daemon_config: $(BUILD)/daemon/config.o
$(BUILD)/tests/test_daemon_params: $(BUILD)/daemon/params.o
$(BUILD)/tests/test_daemon_multipart: $(BUILD)/daemon/multipart.o
$(BUILD)/tests/test_daemon_queue: $(BUILD)/daemon/queue.o
$(BUILD)/tests/test_daemon_metrics: $(BUILD)/daemon/metrics.o $(BUILD)/daemon/sbuf.o

# ------------------------------------------------------------------ make run
# Checks the Debian build dependencies (installs them with apt as root or via sudo,
# otherwise prints the apt command and stops), builds, fetches the default model when
# MODEL is not given and $(MODELS_DIR)/tf_efficientdet_d0.safetensors is absent, and runs
# effdetd in the foreground on 127.0.0.1:8080. When that fetch fails (no network), it
# serves the trained demo model shipped in the repository instead (models/shapes.safetensors:
# circles, squares and triangles; the page offers sample images for it) and says so.
#   make run
#   make run MODEL=../shared/reference/d0/weights.safetensors
#   make run RUN_LISTEN=0.0.0.0:8080 RUN_ARGS="--workers 2 --api-key secret"
BUILD_DEPS := build-essential pkg-config python3 libopenblas-dev libjson-c-dev libjpeg62-turbo-dev libevent-dev
RUN_LISTEN ?= 127.0.0.1:8080
RUN_ARGS   ?=
DEMO_MODEL := models/shapes.safetensors
# mk/model.mk gives MODEL a default *name* (`make model`); `make run` takes a *path*
# from the command line or the environment only.
ifneq ($(filter command line environment,$(origin MODEL)),)
  RUN_MODEL := $(MODEL)
  RUN_FETCH := no
else
  # recursive: MODELS_DIR comes from mk/model.mk, read after this file
  RUN_MODEL = $(MODELS_DIR)/tf_efficientdet_d0.safetensors
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
# libFuzzer targets for the parsers that read attacker-controlled bytes. Built with
# clang whatever SANITIZE says (libFuzzer needs clang). `make fuzz FUZZ_TIME=600`.
FUZZ_CC    ?= clang
FUZZ_FLAGS ?= -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TIME  ?= 60
FUZZ_BINS  := build/fuzz/fuzz_multipart build/fuzz/fuzz_params build/fuzz/fuzz_coco_annotations

build/fuzz/fuzz_multipart: fuzz/fuzz_multipart.c daemon/multipart.c daemon/multipart.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Idaemon -o $@ fuzz/fuzz_multipart.c daemon/multipart.c

build/fuzz/fuzz_params: fuzz/fuzz_params.c daemon/params.c daemon/params.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Idaemon -o $@ fuzz/fuzz_params.c daemon/params.c

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@for t in multipart params coco_annotations; do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  echo "== fuzz_$$t for $(FUZZ_TIME) s"; \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -max_len=65536 build/fuzz/corpus-$$t fuzz/corpus/$$t || exit 1; \
	done
