# Compute kernels (lib/op_*.c) are written for GCC's auto-vectoriser (loops over
# channels, an inline branch-free expf). At -O2, GCC 12 uses the "very cheap" cost
# model, which refuses every loop whose trip count is not known to be a multiple of the
# vector width, i.e. all of them: ask for the normal cost model on these files only.
KERNEL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard lib/op_*.c))
$(KERNEL_OBJ): CFLAGS += -fvect-cost-model=dynamic
