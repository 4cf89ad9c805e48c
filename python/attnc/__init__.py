"""attnc: compile attention specs and run the kernels on NumPy arrays.

    import numpy as np, attnc
    kernel = attnc.compile("examples/alibi_gqa.attn")        # or spec text
    o, lse = kernel(q, k, v, slope=slopes)                    # NumPy in, NumPy out

Targets: "cpu" (tiled, the default) and "cpu-reference" (the oracle). Inputs
are positional in parameter order or keywords by name; any object that NumPy
can take through DLPack (``np.from_dlpack``) on the CPU works as well. Element
types must match the spec exactly (no silent casts); bf16 uses
``ml_dtypes.bfloat16`` arrays (or uint16 arrays holding bf16 bits).
"""

from __future__ import annotations

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

__all__ = ["compile", "Kernel", "SpecError", "Diagnostic", "TensorInfo"]

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
_cache_lock = threading.Lock()


def compile(spec: str | os.PathLike, target: str = "cpu", kernel: str | None = None) -> "Kernel":
    """Compiles a spec (a path to an .attn file, or the spec text) for `target`.

    Compiling the same spec, target and kernel again returns the cached kernel.
    Raises SpecError (with diagnostics) for a bad spec and ValueError for an
    unknown target or kernel name.
    """
    text, source = _read_spec(spec)
    key = (text, source, target, kernel)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    raw = _attnc._Kernel(text, source, kernel, target)
    if not raw.ok:
        diagnostics = [Diagnostic(*d) for d in raw.diagnostics]
        if raw.compile_status == _attnc.STATUS_SPEC_ERROR:
            raise SpecError(raw.compile_error, diagnostics)
        raise ValueError(raw.compile_error)
    compiled = Kernel(raw, target)
    with _cache_lock:
        return _cache.setdefault(key, compiled)


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

    def __init__(self, raw: Any, target: str):
        self._raw = raw
        self.target = target
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

    def __call__(self, *args: Any, **kwargs: Any):
        values = self._bind(args, kwargs)
        arrays = [None if v is None else self._as_array(v, info) for v, info in zip(values, self.params)]
        inputs = [_tensor_arg(a) for a in arrays]
        shapes = self._raw.output_shapes(inputs)
        outputs = [np.empty(shape, dtype=_NUMPY_DTYPES[info.dtype]) for shape, info in zip(shapes, self.results)]
        self._raw.launch(inputs, [_tensor_arg(o) for o in outputs])
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
            try:
                value = np.from_dlpack(value)
            except (BufferError, RuntimeError, TypeError) as error:
                raise TypeError(
                    f"input '{info.name}' is not a CPU array ({error}); GPU tensors need "
                    "the NVIDIA backend, which this build does not have yet"
                ) from None
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


def _tensor_arg(array: np.ndarray | None) -> tuple:
    if array is None:
        return (0, 0, [], [])
    code = _DTYPE_NAMES.index(next(k for k, v in _NUMPY_DTYPES.items() if v == array.dtype))
    if array.dtype == np.uint16:
        code = _DTYPE_NAMES.index("bf16")
    strides = [s // array.itemsize for s in array.strides]
    return (array.ctypes.data, code, list(array.shape), strides)
