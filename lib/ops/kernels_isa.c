/* One level's kernel table: compiled once per ISA with the kernel files (mk/kernels.mk),
 * so every op_* name below is that level's copy (ops.h). */
#include "ops/ops.h"

const kernel_table kernels_this_isa = {
#define KSTR_(x) #x
#define KSTR(x) KSTR_(x)
    .isa = KSTR(EFFDET_KERNEL_ISA),
    .conv2d = op_conv2d,
    .dwconv = op_dwconv,
    .dwconv_sum = op_dwconv_sum,
    .pwconv = op_pwconv,
    .se_gates = op_se_gates,
    .scale_rows = op_scale_rows,
    .scale_channels = op_scale_channels,
    .maxpool3s2 = op_maxpool3s2,
    .upsample_nearest = op_upsample_nearest,
    .fuse = op_fuse,
    .activate = op_activate,
    .add = op_add,
#if defined(__AVX512F__)
    .pwconv_bf16 = op_pwconv_bf16,
    .fold_bf16 = op_fold_bf16,
    .pwconv_amx = op_pwconv_amx,
#endif
};
