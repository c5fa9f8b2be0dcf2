# daemon/samples.c pulls models/samples/*.jpg in with the assembler's .incbin, which the
# compiler's -MMD dependency file cannot see: say it here so that replacing a sample
# rebuilds the daemon.
$(BUILD)/daemon/samples.o: $(wildcard models/samples/*.jpg)
