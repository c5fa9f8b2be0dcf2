# effdetd: unit-test linkage, `make run`, `make install` / `uninstall`, `make fuzz`.

# The daemon's Check tests link the daemon sources they test (pure C, no libevent).
$(BUILD)/tests/test_daemon_config: $(BUILD)/daemon/config.o
$(BUILD)/tests/test_daemon_params: $(BUILD)/daemon/params.o
$(BUILD)/tests/test_daemon_multipart: $(BUILD)/daemon/multipart.o
$(BUILD)/tests/test_daemon_queue: $(BUILD)/daemon/queue.o
