//===- GpuCompiler.h - Compile attn kernels to PTX and cubin ----*- C++ -*-===//
//
// attn kernel -> tensor-core PTX (attn-gpu-tile-softmax, NVVM lowering,
// LLVM's NVPTX backend) -> cubin through ptxas when the CUDA toolkit is
// installed. Needs no GPU and no driver.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_EXECUTION_GPUCOMPILER_H
#define ATTNC_EXECUTION_GPUCOMPILER_H

#include "attnc/Runtime/GpuImage.h"
#include "attnc/Pipelines/Pipelines.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>

namespace attnc {

/// True for the targets the NVIDIA backend emits: sm_80 and sm_90a.
bool isGpuTarget(llvm::StringRef target);

/// Fills the launch facts of `image` from the attn.launch attribute that the GPU
/// strategies put on a kernel function.
void readLaunchAttributes(mlir::Operation *func, GpuImage &image);

/// Compiles kernel `name` (the first when empty) of `module` (cloned) to a
/// PTX image. With `loweredIR`, the module after the GPU lowering (NVVM
/// dialect) is printed into it.
bool compileToPtx(mlir::ModuleOp module, llvm::StringRef name,
                  const GpuPipelineOptions &options, GpuImage &image,
                  std::string &error, std::string *loweredIR = nullptr);

/// The CUDA toolkit holding libdevice: $CUDA_HOME, $CUDA_ROOT, $CUDA_PATH or
/// /usr/local/cuda; nullopt when none has nvvm/libdevice/libdevice.10.bc.
std::optional<std::string> findCudaRoot();

/// The ptxas executable: $ATTNC_PTXAS, the toolkit's bin/ptxas or ptxas on
/// PATH; nullopt when none exists.
std::optional<std::string> findPtxas();

/// Assembles a PTX image into a cubin image with `ptxas -v`; `ptxasLog`
/// receives ptxas's report (registers, spills, shared memory).
bool assembleCubin(const GpuImage &ptx, GpuImage &cubin, std::string &ptxasLog,
                   std::string &error);

} // namespace attnc

#endif // ATTNC_EXECUTION_GPUCOMPILER_H
