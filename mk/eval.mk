# effdet-eval and its COCO metric (tools/coco_eval.c; docs/models.md "Measuring accuracy").
# The link rule is in the Makefile with the other tools.

# IoUs and thresholds must round exactly as pycocotools' numpy does: no fused multiply-add.
$(BUILD)/tools/coco_eval.o: CFLAGS += -ffp-contract=off
$(BUILD)/tests/unit/test_coco_eval.o: CFLAGS += -Itools
$(BUILD)/tests/test_coco_eval: $(BUILD)/tools/coco_eval.o

build/fuzz/fuzz_coco_annotations: fuzz/fuzz_coco_annotations.c tools/coco_eval.c tools/coco_eval.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -ffp-contract=off -Itools $(shell pkg-config --cflags json-c) -o $@ \
	  fuzz/fuzz_coco_annotations.c tools/coco_eval.c $(shell pkg-config --libs json-c) -lm
