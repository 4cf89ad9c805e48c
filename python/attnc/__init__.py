"""attnc: compile attention specs and run the kernels on NumPy arrays.

    import numpy as np, attnc
    kernel = attnc.compile("examples/alibi_gqa.attn")        # or spec text
    o, lse = kernel(q, k, v, slope=slopes)                    # NumPy in, NumPy out

Targets: "cpu" (tiled, the default), "cpu-reference" (the oracle), and the
NVIDIA GPUs "sm_80", "sm_90a" or "cuda" (the GPU present). A GPU kernel's
``image()`` bytes (or ``attnc compile --emit=image``) load with
``attnc.load`` on machines without a compiler: the runtime-only build of
this package (ATTNC_RUNTIME_ONLY) has no LLVM or MLIR in it. Inputs are
positional in parameter order or keywords by name. CPU kernels take NumPy
arrays or any CPU DLPack object; GPU kernels take CUDA tensors through DLPack
(PyTorch, CuPy, JAX, ...) and return tensors of the same library (PyTorch or
CuPy), launched on that library's current stream. Element types must match
the spec exactly (no silent casts); bf16 uses ``ml_dtypes.bfloat16`` arrays
(or uint16 arrays holding bf16 bits) on the CPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from typing import Any, NamedTuple

import numpy as np

from . import _attnc

try:  # bf16 arrays; without ml_dtypes bf16 travels as uint16 bit patterns
    import ml_dtypes

    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    _BF16 = None

__all__ = ["compile", "load", "Kernel", "SpecError", "Diagnostic", "TensorInfo",
           "HAS_COMPILER"]

#: False in the runtime-only build, which loads GPU images and compiles nothing.
HAS_COMPILER: bool = _attnc.HAS_COMPILER

# Codes of attnc_dtype (include/attnc-c/attnc.h), in order.
_DTYPE_NAMES = ["f32", "f16", "bf16", "i32", "i8", "bool"]
_NUMPY_DTYPES = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": _BF16 if _BF16 is not None else np.dtype(np.uint16),
    "i32": np.dtype(np.int32),
    "i8": np.dtype(np.int8),
    "bool": np.dtype(np.bool_),
}


class Diagnostic(NamedTuple):
    file: str
    line: int
    col: int
    message: str
    hint: str
    severity: int


class SpecError(ValueError):
    """A spec that does not parse or verify; ``diagnostics`` says where."""

    def __init__(self, message: str, diagnostics: list[Diagnostic]):
        super().__init__(message)
        self.diagnostics = diagnostics


class TensorInfo(NamedTuple):
    name: str
    dtype: str
    dims: tuple  # symbols (str) or fixed sizes (int)
    optional: bool

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.dims)}]"


_cache: dict[tuple, "Kernel"] = {}
_cache_lock = threading.RLock()  # torch_op compiles under it


def compile(
    spec: str | os.PathLike, target: str = "cpu", kernel: str | None = None, **options: Any
) -> "Kernel":
    """Compiles a spec (a path to an .attn file, or the spec text) for `target`.

    Keyword options tune the kernel, with ``_`` for ``-`` in the names
    ``attnc compile`` takes: for GPU targets (and "gpu-emulator") ``warps``,
    ``block_k``, ``rows_per_warp``, ``mma`` ("sync" or "wgmma"),
    ``split_keys`` (keys per split, or "auto"), ``block_v``,
    ``segment_chunks``, ``warp_specialize=True`` (with ``mma="wgmma"``),
    ``pack_gqa=True`` (query heads of a GQA group share a CTA) and
    ``from_tile_programs=True``; for "cpu" ``block_q`` and ``block_k``. Compiling the same spec, target, kernel and options again
    returns the cached kernel. Raises SpecError (with diagnostics) for a bad
    spec and ValueError for an unknown target, kernel name or option.
    """
    text, source = _read_spec(spec)
    return _compile_part(_Recipe(text, source, kernel, _option_text(options)), target,
                         _attnc.PART_FORWARD)


class _Recipe(NamedTuple):
    """What compile() made a kernel from, to compile its other parts."""

    text: str
    source: str
    kernel: str | None
    options: str


def _compile_part(recipe: _Recipe, target: str, part: int) -> "Kernel":
    """One part (attnc_kernel_part) of the recipe's kernel for `target`,
    cached; raises SpecError or ValueError as compile() does."""
    key = (recipe, target, part)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    raw = _attnc._Kernel(recipe.text, recipe.source, recipe.kernel, target, recipe.options, part)
    if not raw.ok:
        diagnostics = [Diagnostic(*d) for d in raw.diagnostics]
        if raw.compile_status == _attnc.STATUS_SPEC_ERROR:
            raise SpecError(raw.compile_error, diagnostics)
        raise ValueError(raw.compile_error)
    # Torch operator names hash what made the kernel: the spec, the kernel
    # chosen in it, the options and the part.
    origin = f"{recipe.text}\0{recipe.kernel or ''}\0{recipe.options}"
    if part != _attnc.PART_FORWARD:
        origin += f"\0part {part}"
    compiled = Kernel(raw, raw.target, origin, recipe)
    with _cache_lock:
        return _cache.setdefault(key, compiled)


def _option_text(options: dict[str, Any]) -> str:
    """Keyword options as the C API's "name=value" text, in a fixed order."""
    items = []
    for name, value in sorted(options.items()):
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                items.append(flag)
        elif isinstance(value, (int, str)):
            items.append(f"{flag}={value}")
        else:
            raise TypeError(f"option {name} takes an int or a str, got {type(value).__name__}")
    return " ".join(items)


def load(image: bytes | os.PathLike | str) -> "Kernel":
    """A GPU kernel from an image: the bytes of ``Kernel.image()`` or the path
    of a file written by ``attnc compile --emit=image``. Works in the
    runtime-only build. Raises ValueError for a truncated or corrupted image."""
    if not isinstance(image, (bytes, bytearray)):
        with open(os.fspath(image), "rb") as file:
            image = file.read()
    raw = _attnc._Kernel(bytes(image))
    if not raw.ok:
        raise ValueError(raw.compile_error)
    # Torch operator names hash the spec and options; a loaded kernel's
    # image stands for them.
    return Kernel(raw, raw.target, "image " + hashlib.sha256(image).hexdigest())


def _read_spec(spec: Any) -> tuple[str, str]:
    if isinstance(spec, os.PathLike) or (
        isinstance(spec, str) and "\n" not in spec and spec.endswith(".attn")
    ):
        path = os.fspath(spec)
        with open(path, encoding="utf-8") as file:
            return file.read(), path
    if not isinstance(spec, str):
        raise TypeError(f"compile() takes spec text or a path, got {type(spec).__name__}")
    return spec, "<string>"


class Kernel:
    """A compiled kernel; call it with one array per input."""

    def __init__(self, raw: Any, target: str, origin: str = "", recipe: _Recipe | None = None):
        self._raw = raw
        self.target = target
        self.name = raw.name
        self._origin = origin  # what made it, for torch operator names
        self._recipe = recipe  # None for a loaded image
        self._torch_ops: dict[str, Any] = {}
        self.params = [self._info(t) for t in raw.tensors(False)]
        self.results = [self._info(t) for t in raw.tensors(True)]

    @staticmethod
    def _info(raw: tuple) -> TensorInfo:
        name, code, dims, optional = raw
        return TensorInfo(name, _DTYPE_NAMES[code], tuple(dims), optional)

    def __repr__(self) -> str:
        params = ", ".join(f"{p.name}: {p}{'?' if p.optional else ''}" for p in self.params)
        results = ", ".join(f"{r.name}: {r}" for r in self.results)
        return f"<attnc.Kernel ({params}) -> ({results}) on {self.target}>"

    @property
    def is_gpu(self) -> bool:
        return self.target.startswith("sm_")

    @property
    def from_cache(self) -> bool:
        """True when the GPU kernel came from the disk cache."""
        return self._raw.from_cache

    def torch_op(self, name: str | None = None):
        """Registers the kernel as the PyTorch operator ``torch.ops.attnc.<name>``
        (torch.library.custom_op; torch >= 2.4) and returns it. The operator
        takes torch tensors in parameter order (``None`` for an omitted optional
        input), returns new tensors, and works under torch.compile without a
        graph break: its fake implementation derives the output shapes from
        the input shapes. CPU kernels register for CPU tensors, GPU kernels
        for CUDA tensors. ``name`` defaults to the kernel name, the target and
        a hash of the spec, the kernel chosen in it and the options (or of
        the image), so differently compiled kernels get distinct operators;
        asking again returns the same operator."""
        from . import _torch

        name = name or _torch.default_name(self.name, self._origin, self.target)
        with _cache_lock:
            if name not in self._torch_ops:
                self._torch_ops[name] = _torch.register(self, name)
            return self._torch_ops[name]

    @property
    def backward_kernel(self) -> "Kernel":
        """The kernel's backward (docs/semantics.md section 8), compiled on
        first use: it takes the kernel's inputs, then ``o`` (the output),
        ``lse`` (softmax), ``d_<o>`` and, when the kernel returns lse,
        ``d_<lse>``; it returns ``d_q``, ``d_k``, ``d_v`` and ``d_<x>`` for
        every float input ``x`` the score expression reads. It is compiled
        for the kernel's target and options: softmax-family kernels ("cpu":
        the tiled backward; "cpu-reference"; GPU targets), linear kernels
        on "cpu-reference" and, without a gate per key dimension, on
        "cpu" (the chunkwise backward). Raises ValueError saying why a
        kernel has no backward."""
        if self._recipe is None:
            raise ValueError(f"kernel '{self.name}' was loaded from an image; "
                             "compile the spec to get its backward")
        return _compile_part(self._recipe, self.target, _attnc.PART_BACKWARD)

    def backward(self, *args: Any, **kwargs: Any):
        """Runs ``backward_kernel``: ``kernel.backward(q, k, v, ..., o=o,
        lse=lse, d_o=d_o)`` returns the gradients in the order of
        ``backward_kernel.results`` (``d_q``, ``d_k``, ``d_v``, then the
        score's float inputs)."""
        gradients = self.backward_kernel(*args, **kwargs)
        return gradients if isinstance(gradients, tuple) else (gradients,)

    def _training_forward(self) -> "Kernel":
        """The forward training runs: this kernel, or for a softmax kernel
        without an lse result, the same kernel returning lse as well."""
        if self._recipe is None:
            raise ValueError(f"kernel '{self.name}' was loaded from an image")
        return _compile_part(self._recipe, self.target, _attnc.PART_TRAINING_FORWARD)

    @property
    def threads(self) -> int:
        """CPU kernels: the host threads that share the (batch, head) grid of
        a call (0 for GPU kernels). Setting 0 restores the default:
        $ATTNC_NUM_THREADS, else one per hardware thread. The kernel object
        is shared by every compile() of the same spec, and so is the setting."""
        return self._raw.cpu_threads

    @threads.setter
    def threads(self, count: int) -> None:
        self._raw.cpu_threads = count

    @property
    def ptx(self) -> str:
        """The PTX of a GPU kernel ("" on the CPU)."""
        return self._raw.image().decode()

    def image(self) -> bytes:
        """A GPU kernel's image (launch facts and PTX) for ``attnc.load``
        elsewhere, e.g. on a GPU host with the runtime-only build; b"" for
        CPU and emulator kernels."""
        return self._raw.serialize()

    def __call__(self, *args: Any, sync: bool = True, **kwargs: Any):
        """Runs the kernel. GPU kernels are enqueued on the current stream of
        the inputs' library; with ``sync`` (the default) the call waits and
        raises what the kernel found wrong in its inputs (out-of-bounds index
        reads, bad cu_seqlens); with ``sync=False`` call ``synchronize()``."""
        if self.is_gpu:
            return self._call_gpu(self._bind(args, kwargs), sync)
        values = self._bind(args, kwargs)
        arrays = [None if v is None else self._as_array(v, info) for v, info in zip(values, self.params)]
        inputs = [_tensor_arg(a) for a in arrays]
        shapes = self._raw.output_shapes(inputs)
        outputs = [np.empty(shape, dtype=_NUMPY_DTYPES[info.dtype]) for shape, info in zip(shapes, self.results)]
        self._raw.launch(inputs, [_tensor_arg(o) for o in outputs], 0)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def workspace_bytes(self, *args: Any, **kwargs: Any) -> int:
        """The device memory a call with inputs of these shapes allocates for
        itself, in stream order, and frees once the kernel is done: the
        partial results of GPU kernels that split sequences (causal linear
        segments) or keys (``split_keys``); 0 for other kernels and on the
        CPU. Inputs are given as for a call; only their ``shape`` is read,
        so arrays, tensors and shape tuples all do."""
        values = self._bind(args, kwargs)
        inputs = [
            (0, 0, [], [])
            if value is None
            else (1, _DTYPE_NAMES.index(info.dtype), [int(s) for s in getattr(value, "shape", value)], [])
            for value, info in zip(values, self.params)
        ]
        return self._raw.workspace_bytes(inputs)

    def synchronize(self) -> None:
        """Waits for the last GPU launch and raises its input errors."""
        if self.is_gpu:
            self._raw.synchronize(self._stream or 0)

    _stream = None

    def _call_gpu(self, values: list, sync: bool):
        views = []
        for value, info in zip(values, self.params):
            views.append(None if value is None else _cuda_view(value, info))
        present = [v for v in views if v is not None]
        library = present[0].library
        device = present[0].device
        if any(v.device != device for v in present):
            raise ValueError("all inputs must be on the same CUDA device")
        inputs = [(0, 0, [], []) if v is None else v.arg for v in views]
        shapes = self._raw.output_shapes(inputs)
        outputs = [_cuda_empty(library, shape, info.dtype, device)
                   for shape, info in zip(shapes, self.results)]
        self._stream = _current_stream(library, device)
        out_args = [_cuda_view(o, info).arg for o, info in zip(outputs, self.results)]
        self._raw.launch(inputs, out_args, self._stream)
        if sync:
            self._raw.synchronize(self._stream)
        del views  # the DLPack capsules may be released now
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _bind(self, args: tuple, kwargs: dict) -> list:
        names = [p.name for p in self.params]
        if len(args) > len(names):
            raise TypeError(f"kernel takes {len(names)} inputs ({', '.join(names)}), got {len(args)}")
        values = list(args) + [None] * (len(names) - len(args))
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(f"unknown input '{name}'; inputs: {', '.join(names)}")
            index = names.index(name)
            if index < len(args):
                raise TypeError(f"input '{name}' is given twice")
            values[index] = value
        for value, info in zip(values, self.params):
            if value is None and not info.optional:
                raise TypeError(f"missing input '{info.name}' ({info})")
        return values

    @staticmethod
    def _as_array(value: Any, info: TensorInfo) -> np.ndarray:
        if not isinstance(value, np.ndarray) and hasattr(value, "__dlpack__"):
            device = value.__dlpack_device__()[0] if hasattr(value, "__dlpack_device__") else _DLPACK_CPU
            if device != _DLPACK_CPU:
                raise TypeError(
                    f"input '{info.name}' is not in CPU memory (DLPack device type {device}); compile "
                    "for a GPU target (sm_80, sm_90a, cuda) to run on CUDA tensors"
                )
            bf16_bits = str(getattr(value, "dtype", "")) == "torch.bfloat16"  # NumPy has no bf16
            if bf16_bits:
                import torch

                value = value.view(torch.int16)
            try:
                value = np.from_dlpack(value)
            except (BufferError, RuntimeError, TypeError) as error:
                raise TypeError(f"input '{info.name}' cannot be read as a NumPy array ({error})") from None
            if bf16_bits:
                value = value.view(np.uint16)
        array = np.asarray(value)
        expected = _NUMPY_DTYPES[info.dtype]
        if array.dtype != expected and not (info.dtype == "bf16" and array.dtype == np.uint16):
            raise TypeError(f"input '{info.name}' must be {info.dtype} ({info}), got {array.dtype}")
        if array.ndim != len(info.dims):
            raise ValueError(
                f"input '{info.name}' must have shape {info}, got {list(array.shape)} (rank {array.ndim})"
            )
        if any(s < 0 or s % array.itemsize for s in array.strides):
            array = np.ascontiguousarray(array)
        return array


_DLPACK_CPU = 1  # DLDeviceType kDLCPU


def _tensor_arg(array: np.ndarray | None) -> tuple:
    if array is None:
        return (0, 0, [], [])
    if array.dtype == np.uint16:  # bf16 bit patterns
        code = _DTYPE_NAMES.index("bf16")
    else:
        code = _DTYPE_NAMES.index(next(k for k, v in _NUMPY_DTYPES.items() if v == array.dtype))
    strides = [s // array.itemsize for s in array.strides]
    return (array.ctypes.data, code, list(array.shape), strides)


# ---------------------------------------------------------------------------
# CUDA tensors through DLPack (legacy "dltensor" capsules, DLPack 0.x ABI).

_KDL_CPU, _KDL_CUDA = 1, 2
# (DLDataTypeCode, bits) -> attnc dtype; 0 int, 1 uint, 2 float, 4 bfloat, 6 bool
_DLPACK_DTYPES = {(2, 32): "f32", (2, 16): "f16", (4, 16): "bf16", (0, 32): "i32",
                  (0, 8): "i8", (6, 8): "bool", (1, 8): "bool"}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _DeviceView(NamedTuple):
    arg: tuple  # (pointer, dtype code, shape, strides) for the C API
    device: tuple  # (DLPack device type, id)
    library: str  # "torch", "cupy", ... (the producer's top-level module)
    capsule: Any  # keeps the producer's DLPack export alive


def _dlpack_view(value: Any, name: str) -> _DeviceView:
    """Reads a DLPack export without taking it over: the capsule keeps its
    name, so the producer's destructor releases it when we drop it."""
    if not hasattr(value, "__dlpack__"):
        raise TypeError(f"input '{name}' is a {type(value).__name__}, not a DLPack tensor")
    try:
        capsule = value.__dlpack__()
    except (BufferError, RuntimeError, TypeError) as error:
        raise TypeError(f"input '{name}' cannot be exported through DLPack ({error})") from None
    tensor = _DLTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
    key = (tensor.dtype.code, tensor.dtype.bits)
    if tensor.dtype.lanes != 1 or key not in _DLPACK_DTYPES:
        raise TypeError(f"input '{name}' has an unsupported DLPack dtype {key}")
    shape = [tensor.shape[i] for i in range(tensor.ndim)]
    if tensor.strides:
        strides = [tensor.strides[i] for i in range(tensor.ndim)]
    else:
        strides = [1] * tensor.ndim
        for i in range(tensor.ndim - 2, -1, -1):
            strides[i] = strides[i + 1] * shape[i + 1]
    dtype = _DLPACK_DTYPES[key]
    pointer = (tensor.data or 0) + tensor.byte_offset
    library = type(value).__module__.split(".")[0]
    return _DeviceView((pointer, _DTYPE_NAMES.index(dtype), shape, strides),
                       (tensor.device.device_type, tensor.device.device_id), library, capsule)


def _cuda_view(value: Any, info: TensorInfo) -> _DeviceView:
    device = value.__dlpack_device__() if hasattr(value, "__dlpack_device__") else None
    if device is not None and device[0] != _KDL_CUDA:
        raise TypeError(
            f"input '{info.name}' is not on a CUDA device (DLPack device type {device[0]}); "
            "GPU kernels take CUDA tensors, CPU kernels (target='cpu') take host arrays")
    view = _dlpack_view(value, info.name)
    if view.device[0] != _KDL_CUDA:
        raise TypeError(
            f"input '{info.name}' is not on a CUDA device (DLPack device type {view.device[0]}); "
            "GPU kernels take CUDA tensors, CPU kernels (target='cpu') take host arrays")
    dtype = _DTYPE_NAMES[view.arg[1]]
    if dtype != info.dtype:
        raise TypeError(f"input '{info.name}' must be {info.dtype} ({info}), got {dtype}")
    if len(view.arg[2]) != len(info.dims):
        raise ValueError(f"input '{info.name}' must have shape {info}, got {view.arg[2]}")
    return view


def _cuda_empty(library: str, shape: list, dtype: str, device: tuple):
    if library == "torch":
        import torch

        torch_dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
                       "i32": torch.int32, "i8": torch.int8, "bool": torch.bool}[dtype]
        return torch.empty(shape, dtype=torch_dtype, device=f"cuda:{device[1]}")
    if library == "cupy":
        import cupy

        if dtype == "bf16":
            raise TypeError("CuPy has no bf16 arrays; use PyTorch for bf16 outputs")
        with cupy.cuda.Device(device[1]):
            return cupy.empty(shape, dtype=np.dtype(_NUMPY_DTYPES[dtype]))
    raise TypeError(
        f"cannot allocate outputs with {library}: GPU kernels return PyTorch or CuPy tensors")


def _current_stream(library: str, device: tuple) -> int:
    if library == "torch":
        import torch

        return torch.cuda.current_stream(device[1]).cuda_stream
    if library == "cupy":
        import cupy

        return cupy.cuda.get_current_stream().ptr
    return 0
