"""attnc kernels as PyTorch custom operators (torch.library, torch >= 2.4).

``Kernel.torch_op()`` registers a kernel as ``torch.ops.attnc.<name>``: an
opaque operator that torch.compile keeps in its graph (no graph break) and
runs through attnc. Its fake implementation gives the output shapes from the
input shapes alone, as ``attnc_kernel_infer_output_shape`` computes them, so
tracing checks dtypes and shapes and names the tensor at fault.

A kernel with a backward is differentiable: the operator runs the training
forward (which also returns lse), saves the inputs and outputs, and its
autograd formula runs the backward kernel as the operator
``attnc::<name>_backward``, so both passes stay in torch.compile's graphs.
When the training forward has a result the spec does not (lse),
``attnc::<name>`` is a composite of ``attnc::<name>_training`` that drops it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import torch

_TORCH_DTYPES = {
    "f32": torch.float32,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "i32": torch.int32,
    "i8": torch.int8,
    "bool": torch.bool,
}
_DTYPE_CODES = {dtype: code for code, dtype in enumerate(_TORCH_DTYPES.values())}

try:  # a size hint that adds no guard (torch >= 2.10); else int() guards
    from torch.fx.experimental.symbolic_shapes import optimization_hint as _size_hint
except ImportError:  # pragma: no cover - depends on the torch version
    _size_hint = int


def default_name(kernel_name: str, origin: str, target: str) -> str:
    """``<kernel>_<target>_<hash>``: kernels compiled from distinct specs or
    with distinct options (``origin``) get distinct operators."""
    digest = hashlib.sha256(f"{target}\0{origin}".encode()).hexdigest()[:10]
    return f"{kernel_name}_{re.sub(r'[^0-9A-Za-z_]', '_', target)}_{digest}"


# Libraries that define composite operators stay alive with the process.
_libraries: list = []


def _schema(kernel: Any) -> tuple[str, str]:
    """The (arguments, returns) of the kernel's operator schema."""
    arguments = ", ".join(f"Tensor{'?' if p.optional else ''} {p.name}" for p in kernel.params)
    results = kernel.results
    returns = "Tensor" if len(results) == 1 else "(" + ", ".join("Tensor" for _ in results) + ")"
    return arguments, returns


def register(kernel: Any, name: str):
    if not hasattr(torch.library, "custom_op"):
        raise RuntimeError(f"attnc torch ops need torch >= 2.4 (torch.library.custom_op); this is torch {torch.__version__}")
    if not re.fullmatch(r"[A-Za-z_][0-9A-Za-z_]*", name):
        raise ValueError(f"operator name '{name}' must be an identifier")
    try:
        backward = kernel.backward_kernel  # first: it says why when there is none
        training = kernel._training_forward()
    except ValueError as error:  # no backward: a forward-only operator
        op = _custom_op(kernel, name)
        _refuse_gradients(op, name, str(error))
        return op
    hidden = len(training.results) - len(kernel.results)
    forward_op = _custom_op(training, f"{name}_training" if hidden else name)
    _register_gradients(forward_op, training, _custom_op(backward, f"{name}_backward"), backward)
    if not hidden:
        return forward_op
    arguments, returns = _schema(kernel)
    count = len(kernel.results)

    def without_hidden(*args: torch.Tensor | None):
        outputs = forward_op(*args)
        return outputs[0] if count == 1 else tuple(outputs[:count])

    library = torch.library.Library("attnc", "FRAGMENT")
    library.define(f"{name}({arguments}) -> {returns}")
    library.impl(name, without_hidden, "CompositeImplicitAutograd")
    _libraries.append(library)
    return getattr(torch.ops.attnc, name)


def _refuse_gradients(op: Any, name: str, reason: str) -> None:
    def backward(ctx: Any, *grads: torch.Tensor):
        raise RuntimeError(f"attnc operator '{name}' has no backward: {reason}")

    op.register_autograd(backward, setup_context=lambda ctx, inputs, output: None)


def _register_gradients(forward_op: Any, training: Any, backward_op: Any, backward: Any) -> None:
    """dL/d(inputs) from the backward kernel, which takes the forward's
    inputs, then its outputs and their gradients by name (o, lse, d_o, d_lse)."""
    arity = len(training.params)
    input_index = {p.name: i for i, p in enumerate(training.params)}

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        outputs = output if isinstance(output, tuple) else (output,)
        ctx.present = [a is not None for a in inputs]
        ctx.save_for_backward(*[a for a in inputs if a is not None], *outputs)

    def gradients(ctx: Any, *grads: torch.Tensor | None):
        saved = iter(ctx.saved_tensors)
        inputs = [next(saved) if present else None for present in ctx.present]
        outputs = list(saved)
        named: dict[str, torch.Tensor] = {}
        for info, value, grad in zip(training.results, outputs, grads):
            named[info.name] = value
            named["d_" + info.name] = (torch.zeros_like(value) if grad is None else grad).contiguous()
        results = backward_op(*inputs, *[named[p.name] for p in backward.params[arity:]])
        results = results if isinstance(results, tuple) else (results,)
        input_grads: list[torch.Tensor | None] = [None] * arity
        for info, grad in zip(backward.results, results):
            input_grads[input_index[info.name[len("d_"):]]] = grad
        return tuple(input_grads)

    forward_op.register_autograd(gradients, setup_context=setup_context)


def _custom_op(kernel: Any, name: str):
    params, results = kernel.params, kernel.results
    arguments, returns = _schema(kernel)

    def run(*args: torch.Tensor | None):
        if kernel.is_gpu:  # CUDA tensors in, tensors of the same library out
            return kernel(*args)
        outputs = kernel(*[None if a is None else _to_numpy(a) for a in args])
        if len(results) == 1:
            return _from_numpy(outputs)
        return tuple(_from_numpy(o) for o in outputs)

    def fake(*args: torch.Tensor | None):
        present = [a for a in args if a is not None]
        for arg, info in zip(args, params):
            if arg is not None and arg.dtype not in _DTYPE_CODES:
                raise TypeError(f"input '{info.name}' must be {info.dtype} ({info}), got {arg.dtype}")
        # Concrete sizes (hints) for the checks and for result dims no input
        # carries (the per-sequence count of a packed final state) ...
        described = [
            (0, 0, [], [])
            if a is None
            else (1, _DTYPE_CODES[a.dtype], [_size_hint(s) for s in a.shape], [_size_hint(s) for s in a.stride()])
            for a in args
        ]
        shapes = kernel._raw.output_shapes(described, False)
        # ... and the (possibly symbolic) input sizes for every dim that a
        # symbol binds, so that dynamic shapes stay dynamic.
        symbols: dict[str, Any] = {}
        for arg, info in zip(args, params):
            if arg is not None:
                for dim, size in zip(info.dims, arg.shape):
                    if isinstance(dim, str):
                        symbols.setdefault(dim, size)
        outputs = tuple(
            torch.empty(
                [symbols.get(dim, size) if isinstance(dim, str) else size for dim, size in zip(info.dims, shape)],
                dtype=_TORCH_DTYPES[info.dtype],
                device=present[0].device,
            )
            for shape, info in zip(shapes, results)
        )
        return outputs[0] if len(outputs) == 1 else outputs

    op = torch.library.custom_op(
        f"attnc::{name}",
        run,
        mutates_args=(),
        device_types="cuda" if kernel.is_gpu else "cpu",
        schema=f"({arguments}) -> {returns}",
    )
    op.register_fake(fake)
    return op


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (bf16 as uint16 bit patterns), no copy."""
    if tensor.device.type != "cpu":
        raise TypeError(f"a CPU kernel got a tensor on {tensor.device}; compile for a GPU target to run on CUDA tensors")
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
