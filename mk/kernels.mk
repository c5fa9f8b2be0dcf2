# Compute kernels (lib/ops/op_*.c and their table lib/ops/kernels_isa.c), compiled once per
# instruction-set level into distinct symbols (lib/ops/ops.h renames op_X to op_X_<level>);
# lib/core/cpu.c picks one level's table per context from CPUID (or EFFDET_ISA). Included by
# the Makefile before the library's rules, which need KERNEL_OBJ.
#
# Levels (the x86-64 psABI micro-architecture levels):
#   baseline  x86-64-v2  SSE4.2, 4-float vectors, no FMA
#   avx2      x86-64-v3  AVX2 + FMA, 8-float vectors
#   avx512    x86-64-v4  AVX-512 F/BW/CD/DQ/VL + FMA, 16-float vectors
# On other architectures only "baseline" is built, with the compiler's default flags.
ifneq ($(filter x86_64%,$(shell $(CC) -dumpmachine)),)
  KERNEL_ISAS       := baseline avx2 avx512
  ISA_FLAGS_baseline := -march=x86-64-v2
  ISA_FLAGS_avx2     := -march=x86-64-v3
  ISA_FLAGS_avx512   := -march=x86-64-v4
else
  KERNEL_ISAS        := baseline
  ISA_FLAGS_baseline :=
endif
KERNEL_LINT_FLAGS := -DEFFDET_KERNEL_ISA=baseline $(ISA_FLAGS_baseline)

# The kernels are written for GCC's auto-vectoriser (loops over channels, an inline
# branch-free expf). At -O2, GCC 12 uses the "very cheap" cost model, which refuses
# every loop whose trip count is not known to be a multiple of the vector width, i.e.
# all of them: ask for the normal cost model on these files only.
KERNEL_CFLAGS = -fvect-cost-model=dynamic -DEFFDET_KERNEL_ISA=$(1) $(ISA_FLAGS_$(1))

KERNEL_OBJ      := $(foreach i,$(KERNEL_ISAS),$(patsubst lib/%.c,$(BUILD)/lib/isa-$(i)/%.o,$(KERNEL_SRC)))
# tests/unit/test_kernels.c calls one level's kernels (and mathfun.h's helpers) directly.
KERNEL_TEST_BIN := $(foreach i,$(KERNEL_ISAS),$(BUILD)/tests/test_kernels_$(i))

define kernel_rules
$(BUILD)/lib/isa-$(1)/%.o: lib/%.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(LIB_INTERNAL_CFLAGS) $(call KERNEL_CFLAGS,$(1)) -c $$< -o $$@

$(BUILD)/tests/unit/test_kernels_$(1).o: tests/unit/test_kernels.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(LIB_INTERNAL_CFLAGS) $$(CHECK_CFLAGS) $(call KERNEL_CFLAGS,$(1)) -c $$< -o $$@

$(BUILD)/tests/test_kernels_$(1): $(BUILD)/tests/unit/test_kernels_$(1).o $(BUILD)/tests/unit/testutil.o $(BUILD)/libeffdet.a
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(CHECK_LIBS) $$(LDLIBS)
endef
$(foreach i,$(KERNEL_ISAS),$(eval $(call kernel_rules,$(i))))

# The avx512 kernel test also runs the AMX 1x1 kernel with the tile unit emulated in C
# (lib/ops/amx.h), so that its tiling is tested on CPUs without AMX.
ifneq ($(filter avx512,$(KERNEL_ISAS)),)
AMX_EMU_OBJ := $(BUILD)/lib/isa-avx512/ops/op_pwconv_amx_emulated.o
$(AMX_EMU_OBJ): lib/ops/op_pwconv_amx.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LIB_INTERNAL_CFLAGS) $(call KERNEL_CFLAGS,avx512) -DEFFDET_AMX_EMULATE -c $< -o $@
$(BUILD)/tests/test_kernels_avx512: $(AMX_EMU_OBJ)
endif
