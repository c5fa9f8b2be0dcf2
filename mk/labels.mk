# lib/model/labels.c pulls config/coco-labels.txt in with the assembler's .incbin, which the
# compiler's -MMD dependency file cannot see: say it here so that editing the label map
# rebuilds the library.
$(BUILD)/lib/model/labels.o: config/coco-labels.txt
