// Each target's pipeline runs under its name in attnc-opt and takes the
// option text of compileOptions() between braces, as the C API does.
// RUN: attnc-opt %s --pass-pipeline='builtin.module(attnc-gpu-strategies{chip=sm_90a mma=wgmma block-k=16})' | FileCheck %s --check-prefix=WGMMA
// RUN: attnc-opt %s --pass-pipeline='builtin.module(attnc-gpu-pipeline{chip=sm_80})' | FileCheck %s --check-prefix=NVVM
// RUN: attnc-opt %s --pass-pipeline='builtin.module(attnc-emulator-strategies{block-k=16})' | FileCheck %s --check-prefix=EMU
// RUN: attnc-opt %s --pass-pipeline='builtin.module(attnc-cpu-strategies{block-q=16 block-k=16})' | FileCheck %s --check-prefix=LOOPS
// RUN: attnc-opt %s --pass-pipeline='builtin.module(attnc-cpu-pipeline)' | FileCheck %s --check-prefix=LLVM
// RUN: not attnc-opt %s --pass-pipeline='builtin.module(attnc-gpu-strategies{warps=four})' 2>&1 | FileCheck %s --check-prefix=BAD-VALUE
// RUN: not attnc-opt %s --pass-pipeline='builtin.module(attnc-cpu-pipeline{warps=4})' 2>&1 | FileCheck %s --check-prefix=BAD-TARGET
// RUN: not attnc-opt %s --pass-pipeline='builtin.module(attnc-gpu-strategies{from-tile-programs})' 2>&1 | FileCheck %s --check-prefix=MISSPELT

// WGMMA:     gpu.func @dense(
// WGMMA:     wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16
// NVVM:      gpu.module @attnc_kernels [#nvvm.target<O = 3, chip = "sm_80", features = "+ptx80">]
// NVVM:      llvm.func @dense(
// NVVM:      nvvm.mma.sync
// EMU:       func.func @dense(
// EMU-SAME:    %{{.*}}: memref<?xi8>)
// EMU:       call @attnc_emu_mma(
// LOOPS:     func.func @dense(
// LOOPS-SAME:  attnc.cpu_row_block = 16
// LLVM:      llvm.func @dense(
// BAD-VALUE: GPU option 'warps=four' needs a non-negative integer value
// BAD-TARGET: unknown CPU option 'warps=4'; options: block-q=N, block-k=N
// MISSPELT:  unknown GPU option 'from-tile-programs'; options: {{.*}} (did you mean from-tile-program?)
attn.kernel @dense(%q: !attn.tensor<bf16[B, H, N, 32]>, %k: !attn.tensor<bf16[B, H, N, 32]>, %v: !attn.tensor<bf16[B, H, N, 32]>) -> (o: !attn.tensor<bf16[B, H, N, 32]>) {
  %o = attn.softmax %q, %k, %v : (!attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, N, 32]>, !attn.tensor<bf16[B, H, N, 32]>) -> !attn.tensor<bf16[B, H, N, 32]> score {
  } mask {
  }
  attn.return %o : !attn.tensor<bf16[B, H, N, 32]>
}
