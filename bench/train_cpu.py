"""Training step time on the CPU: attnc's torch operator against PyTorch's
scaled_dot_product_attention, forward alone and forward + backward, in one
run. A benchmark, not a test: it prints a table (and --csv FILE) with the
machine, the commit and the settings, and the ratios torch / attnc (above 1:
attnc is faster). Medians of --repeats timed runs after one warm-up.

    PYTHONPATH=build/python python3 bench/train_cpu.py [--lengths 512 1024 2048 4096] [--dims 64 128] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import subprocess
import time

import torch

import attnc

SPECS = {
    "causal": """
kernel causal(q: f32[B, H, N, D], k: f32[B, H, N, D], v: f32[B, H, N, D]) -> (o: f32[B, H, N, D]) {
  o = softmax(q, k, v) { mask = causal }
}""",
    "dense": """
kernel dense(q: f32[B, H, N, D], k: f32[B, H, N, D], v: f32[B, H, N, D]) -> (o: f32[B, H, N, D]) {
  o = softmax(q, k, v) { }
}""",
    # The slope is learnable: torch differentiates through an explicit bias.
    "alibi": """
kernel alibi(q: f32[B, H, N, D], k: f32[B, H, N, D], v: f32[B, H, N, D], slope: f32[H]) -> (o: f32[B, H, N, D]) {
  o = softmax(q, k, v) { score = s - slope[h] * (i - j); mask = causal }
}""",
}


def torch_attention(case: str):
    def attention(q, k, v, *extra):
        if case == "dense":
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)
        if case == "causal":
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        n = q.shape[2]
        i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
        bias = (-extra[0][:, None, None] * (i - j)).masked_fill(j > i, -math.inf)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    return attention


def machine() -> tuple[str, str]:
    """The CPU's model name and the checkout's short commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return model, commit


def median_seconds(step, repeats: int) -> float:
    step()  # warm-up (and, for attnc, nothing to compile: the kernels exist)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(attention, inputs, weight, repeats: int) -> tuple[float, float]:
    def forward():
        with torch.no_grad():
            attention(*inputs)

    def training_step():
        for x in inputs:
            x.grad = None
        (attention(*inputs) * weight).sum().backward()

    return median_seconds(forward, repeats), median_seconds(training_step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(SPECS))
    parser.add_argument("--csv")
    args = parser.parse_args()

    threads = torch.get_num_threads()
    model, commit = machine()
    print(f"cpu: {model}; threads: {threads} (torch and attnc); torch {torch.__version__}; commit {commit}")
    print(f"B=1, H={args.heads}, f32; medians of {args.repeats} runs; ratio = torch / attnc")
    header = ["case", "D", "N", "attnc fwd ms", "torch fwd ms", "fwd ratio", "attnc fwd+bwd ms", "torch fwd+bwd ms",
              "fwd+bwd ratio"]
    print(" | ".join(header))
    rows = []
    for case in args.cases:
        kernel = attnc.compile(SPECS[case])
        kernel.threads = threads
        kernel.backward_kernel.threads = threads
        ours = kernel.torch_op()
        for d, n in ((d, n) for d in args.dims for n in args.lengths):
            gen = torch.Generator().manual_seed(n)
            shape = (1, args.heads, n, d)
            inputs = [torch.randn(shape, generator=gen).requires_grad_() for _ in range(3)]
            if case == "alibi":
                inputs.append(torch.linspace(0.5, 0.01, args.heads).requires_grad_())
            weight = torch.randn(shape, generator=gen)
            attnc_times = measure(ours, inputs, weight, args.repeats)
            torch_times = measure(torch_attention(case), inputs, weight, args.repeats)
            row = [case, d, n, 1e3 * attnc_times[0], 1e3 * torch_times[0], torch_times[0] / attnc_times[0],
                   1e3 * attnc_times[1], 1e3 * torch_times[1], torch_times[1] / attnc_times[1]]
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
