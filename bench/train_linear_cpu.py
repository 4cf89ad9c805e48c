"""Training step time of linear attention on the CPU: attnc's torch operator
(the chunkwise forward and backward, target cpu) against a chunked PyTorch
implementation in the same run (the chunkwise form written with torch ops,
differentiated by autograd: what a researcher writes before reaching for a
kernel), forward alone and forward + backward. A benchmark, not a test: it
prints a table (and --csv FILE) with the machine, the commit and the
settings, and the ratios torch / attnc (above 1: attnc is faster). Medians
of --repeats timed runs after one warm-up.

    PYTHONPATH=build/python python3 bench/train_linear_cpu.py [--lengths 1024 4096 16384] [--csv out.csv]

Cases: Mamba2/SSD (a data-dependent log decay per head and step, learnable),
GLA (one per head, step and key dimension, learnable) and RetNet (a constant
decay per head). The PyTorch form of GLA builds the chunk's C x C x Dk
decays exp(G_r - G_u) (stable under any decay); the factorised
exp(G) / exp(-G) form would be faster but overflows under strong decay.
"""

from __future__ import annotations

import argparse
import csv

import torch

import attnc
from train_cpu import machine, measure  # the same timing and header

SPECS = {
    "ssd": """
kernel ssd(q: f32[B, H, T, D], k: f32[B, H, T, D], v: f32[B, H, T, D], a: f32[B, H, T]) -> (o: f32[B, H, T, D]) {
  o = linear(q, k, v) { gate = a[b, h, t]; chunk = 64 }
}""",
    "gla": """
kernel gla(q: f32[B, H, T, D], k: f32[B, H, T, D], v: f32[B, H, T, D], g: f32[B, H, T, D]) -> (o: f32[B, H, T, D]) {
  o = linear(q, k, v) { gate = g[b, h, t, d]; chunk = 64 }
}""",
    "retnet": """
kernel retnet(q: f32[B, H, T, D], k: f32[B, H, T, D], v: f32[B, H, T, D]) -> (o: f32[B, H, T, D]) {
  o = linear(q, k, v) { gate = log(1 - exp2(-5 - h)); chunk = 64 }
}""",
}


def chunked_torch(case: str, chunk: int = 64):
    """o_t = q_t S_t, S_t = diag(exp g_t) S_{t-1} + k_t^T v_t, in chunks: the
    intra-chunk quadratic form with decays exp(G_r - G_u) (u <= r) plus the
    state carried between chunks, every exponent <= 0. Gates [b, h, t] are
    one per step, [b, h, t, d] one per key dimension."""

    def attention(q, k, v, *extra):
        b, h, steps, d = q.shape
        if case == "retnet":
            decay = torch.log(1 - torch.exp2(-5.0 - torch.arange(h, dtype=q.dtype)))
            gates = decay[None, :, None, None].expand(b, h, steps, 1)
        else:
            gates = extra[0] if extra[0].dim() == 4 else extra[0][..., None]
        state = q.new_zeros(b, h, d, v.shape[-1])
        outputs = []
        for t0 in range(0, steps, chunk):
            qc, kc, vc = q[:, :, t0:t0 + chunk], k[:, :, t0:t0 + chunk], v[:, :, t0:t0 + chunk]
            cumulative = gates[:, :, t0:t0 + chunk].cumsum(2)  # [b, h, rows, 1 or d]
            rows = cumulative.shape[2]
            causal = torch.ones(rows, rows, dtype=torch.bool).tril()[..., None]
            exponent = (cumulative[:, :, :, None] - cumulative[:, :, None]).masked_fill(~causal, -torch.inf)
            if cumulative.shape[-1] == 1:
                scores = (qc @ kc.transpose(-1, -2)) * torch.exp(exponent[..., 0])
            else:
                scores = torch.einsum("bhrd,bhud,bhrud->bhru", qc, kc, torch.exp(exponent))
            outputs.append(scores @ vc + (qc * torch.exp(cumulative)) @ state)
            last = cumulative[:, :, -1:]
            state = torch.exp(last).transpose(-1, -2) * state + \
                (kc * torch.exp(last - cumulative)).transpose(-1, -2) @ vc
        return torch.cat(outputs, 2)

    return attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(SPECS))
    parser.add_argument("--csv")
    args = parser.parse_args()

    threads = torch.get_num_threads()
    model, commit = machine()
    print(f"cpu: {model}; threads: {threads} (torch and attnc); torch {torch.__version__}; commit {commit}")
    print(f"B=1, H={args.heads}, Dk=Dv={args.dim}, chunks of 64, f32; medians of {args.repeats} runs; "
          "ratio = torch / attnc")
    header = ["case", "T", "attnc fwd ms", "torch fwd ms", "fwd ratio", "attnc fwd+bwd ms", "torch fwd+bwd ms",
              "fwd+bwd ratio", "attnc fwd+bwd tokens/s", "max |o - o_torch|"]
    print(" | ".join(header))
    rows = []
    for case in args.cases:
        kernel = attnc.compile(SPECS[case])
        kernel.threads = threads
        kernel.backward_kernel.threads = threads
        ours = kernel.torch_op()
        for steps in args.lengths:
            gen = torch.Generator().manual_seed(steps)
            shape = (1, args.heads, steps, args.dim)
            # Unit-norm rows keep the states of long sequences bounded.
            inputs = [(torch.randn(shape, generator=gen) / args.dim ** 0.5).requires_grad_() for _ in range(3)]
            if case != "retnet":
                gate_shape = shape if case == "gla" else shape[:3]
                inputs.append((-0.1 * torch.rand(gate_shape, generator=gen)).requires_grad_())
            weight = torch.randn(shape, generator=gen)
            attnc_times = measure(ours, inputs, weight, args.repeats)
            torch_times = measure(chunked_torch(case), inputs, weight, args.repeats)
            with torch.no_grad():  # both compute the same outputs
                difference = (ours(*inputs) - chunked_torch(case)(*inputs)).abs().max().item()
            row = [case, steps, 1e3 * attnc_times[0], 1e3 * torch_times[0], torch_times[0] / attnc_times[0],
                   1e3 * attnc_times[1], 1e3 * torch_times[1], torch_times[1] / attnc_times[1],
                   steps / attnc_times[1], difference]
            rows.append(row)
            print(" | ".join(f"{x:.3g}" if isinstance(x, float) else str(x) for x in row), flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["# cpu", model, "threads", threads, "torch", torch.__version__, "commit", commit])
            writer.writerow(header)
            writer.writerows(rows)


if __name__ == "__main__":
    main()
