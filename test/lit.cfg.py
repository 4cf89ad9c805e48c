# lit configuration for attnc.

import os
import shutil

import lit.formats
from lit.llvm import llvm_config

config.name = "ATTNC"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Unit", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.attnc_obj_root, "test")
config.substitutions.append(("%examples", os.path.join(config.attnc_src_root, "examples")))
config.substitutions.append(
    ("%gpu_proof_run", os.path.join(config.attnc_src_root, "scripts", "gpu-proof", "run.sh")))
# The stand-in for libcuda.so.1 of the runtime tests (test/Unit/FakeCudaDriver.h).
config.substitutions.append(
    ("%fake_libcuda", os.path.join(config.attnc_obj_root, "test", "Unit", "libAttncFakeCuda.so")))

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(
    ["attnc", "attnc-opt", "attnc-gpu-run"],
    [os.path.join(config.attnc_obj_root, "bin")],
)

# GPU assembly checks need ptxas (the CUDA toolkit), not a GPU.
ptxas = os.environ.get("ATTNC_PTXAS") or shutil.which("ptxas")
if not ptxas:
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "ptxas"), os.X_OK):
            ptxas = os.path.join(root, "bin", "ptxas")
            break
if ptxas:
    config.available_features.add("ptxas")

# A CUDA driver (a GPU machine): attnc-gpu-run can load images.
try:
    import ctypes

    ctypes.CDLL("libcuda.so.1")
    config.available_features.add("cuda-driver")
except OSError:
    pass
