"""Times PyTorch's peers on the timing cases of scripts/gpu-proof and prints
the ratio of attnc's TFLOP/s to theirs.

Peers: torch.nn.functional.scaled_dot_product_attention with the flash
backend, and FlexAttention (torch.nn.attention.flex_attention, compiled), for
the softmax cases; flash-linear-attention's chunk_simple_gla for the SSD
(scalar gate per head and step) cases and chunk_gla for the GLA cases when
`fla` is importable.
Shapes follow the gpu-proof timing cases: bf16, 16K tokens per batch
(B = 16384 / N), 16 heads, head dim 64/128, causal and not, forward and
backward (dQ, dK, dV against the backward of SDPA's flash kernel and of
FlexAttention, 2.5 times the forward's FLOPs); and decoding
(one query row, 32 query heads over 8 kv heads, head dim 128, 4K-64K keys)
against SDPA, in microseconds and the bandwidth of reading K and V once.
Skips (with a message) whatever the installed torch lacks.

    python3 peers.py --results results.csv --csv peers.csv
"""

import argparse
import csv
import sys

import torch


def tflops(flops, ms):
    return flops / ms / 1e9 if ms > 0 else 0.0


def time_ms(fn, repeat=20):
    fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat


def linear_peer(rows, attnc, label, flops, run):
    """Times flash-linear-attention's `run` on one case against attnc's row."""
    fla_tf = tflops(flops, time_ms(run))
    ours = attnc.get((label, "sm_90a"), 0.0)
    # prepare.sh: one CTA per sequence (LABEL_seg0), segments of 4 chunks.
    one_cta = attnc.get((label + "_seg0", "sm_90a"), 0.0)
    seg4 = attnc.get((label + "_seg4", "sm_90a"), 0.0)
    rows.append([label, ours, 0.0, 0.0, fla_tf, 0.0, 0.0, one_cta, seg4, 0.0, 0.0])
    print(f"{label:<22}{ours:>14.1f}{one_cta:>9.1f}{seg4:>9.1f}{fla_tf:>10.1f}"
          f"{ours / fla_tf if fla_tf else 0:>9.2f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True, help="attnc results.csv")
    parser.add_argument("--csv", required=True, help="where to write peers.csv")
    parser.add_argument("--png", help="where to draw TFLOP/s against sequence length")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("peers: no CUDA device visible to torch; skipped")
        return 0
    attnc, attnc_ms = {}, {}
    with open(args.results) as f:
        for row in csv.DictReader(f):
            if row["tflops"] not in ("", "0.0"):
                attnc[(row["case"], row["target"])] = float(row["tflops"])
                attnc_ms[(row["case"], row["target"])] = float(row["ms"])

    from torch.nn.attention import SDPBackend, sdpa_kernel

    flex = None
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        # One compiled variant per shape and mask: lift dynamo's recompile
        # limit (8), past which flex_attention silently runs unfused.
        torch._dynamo.config.recompile_limit = 64
        torch._dynamo.config.cache_size_limit = 64
        flex = torch.compile(flex_attention)
    except Exception as error:  # older torch
        print(f"peers: FlexAttention unavailable ({error}); skipped")

    rows = []
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    # attnc's default (16 query rows per warp), its 32-row variants
    # (prepare.sh: LABEL_r32, and LABEL_r32k64 at head dim 128) and the
    # wgmma kernels with one and two warpgroups per CTA (LABEL_wg, _wg8).
    print(f"{'case':<22}{'attnc sm_90a':>14}{'32 rows':>9}{'32r k64':>9}{'wgmma':>9}"
          f"{'wgmma 8w':>10}{'sdpa flash':>12}{'flex':>10}{'vs sdpa':>9}{'vs flex':>9}")
    for d in (64, 128):
        for n in (1024, 4096, 16384):
            for causal in (False, True):
                b = 16384 // n
                q, k, v = (torch.randn(b, 16, n, d, device="cuda", dtype=torch.bfloat16)
                           for _ in range(3))
                flops = 4 * b * 16 * n * n * d // (2 if causal else 1)
                label = f"{'causal' if causal else 'dense'}_d{d}_n{n}"
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    sdpa = tflops(flops, time_ms(
                        lambda: torch.nn.functional.scaled_dot_product_attention(
                            q, k, v, is_causal=causal)))
                flex_tf = 0.0
                if flex is not None:
                    mask = None
                    if causal:
                        mask = create_block_mask(lambda b_, h, i, j: i >= j, None, None, n, n)
                    flex_tf = tflops(flops, time_ms(lambda: flex(q, k, v, block_mask=mask)))
                ours = attnc.get((label, "sm_90a"), 0.0)
                rows32 = attnc.get((label + "_r32", "sm_90a"), 0.0)
                rows32k64 = attnc.get((label + "_r32k64", "sm_90a"), 0.0)
                wgmma = attnc.get((label + "_wg", "sm_90a"), 0.0)
                wgmma8 = attnc.get((label + "_wg8", "sm_90a"), 0.0)
                rows.append([label, ours, sdpa, flex_tf, 0.0, rows32, rows32k64, 0.0, 0.0,
                             wgmma, wgmma8])
                print(f"{label:<22}{ours:>14.1f}{rows32:>9.1f}{rows32k64:>9.1f}{wgmma:>9.1f}"
                      f"{wgmma8:>10.1f}{sdpa:>12.1f}{flex_tf:>10.1f}"
                      f"{ours / sdpa if sdpa else 0:>9.2f}"
                      f"{ours / flex_tf if flex_tf else 0:>9.2f}")
    backward_rows = backward(attnc, sdpa_kernel, SDPBackend, flex, create_block_mask if flex else None)
    decode_rows = decode(attnc_ms, sdpa_kernel, SDPBackend)
    try:
        from fla.ops.gla import chunk_gla
        from fla.ops.simple_gla import chunk_simple_gla
    except Exception as error:
        print(f"peers: flash-linear-attention unavailable ({error}); linear cases skipped")
    else:
        print(f"{'case':<22}{'attnc sm_90a':>14}{'1 CTA':>9}{'seg 4':>9}{'fla':>10}"
              f"{'vs fla':>9}")
        for d in (64, 128):
            for n in (1024, 4096, 16384):
                b = 16384 // n
                q, k, v = (torch.randn(b, n, 16, d, device="cuda", dtype=torch.bfloat16)
                           for _ in range(3))
                g = -torch.rand(b, n, 16, device="cuda", dtype=torch.float32)
                linear_peer(rows, attnc, f"ssd_d{d}_n{n}",
                            b * 16 * n * (4 * 64 * d + 4 * d * d),
                            lambda: chunk_simple_gla(q, k, v, g, scale=1.0))
        for n in (1024, 4096, 16384):
            b = 16384 // n
            q, k = (torch.randn(b, n, 16, 64, device="cuda", dtype=torch.bfloat16)
                    for _ in range(2))
            v = torch.randn(b, n, 16, 128, device="cuda", dtype=torch.bfloat16)
            g = torch.nn.functional.logsigmoid(
                torch.randn(b, n, 16, 64, device="cuda", dtype=torch.float32)) / 16
            linear_peer(rows, attnc, f"gla_n{n}",
                        b * 16 * n * (2 * 64 * 192 + 4 * 64 * 128),
                        lambda: chunk_gla(q, k, v, g, scale=0.125))
    with open(args.csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "attnc_sm90a_tflops", "sdpa_flash_tflops", "flex_tflops",
                         "fla_tflops", "attnc_32rows_tflops", "attnc_32rows_k64_tflops",
                         "attnc_one_cta_tflops", "attnc_seg4_tflops", "attnc_wgmma_tflops",
                         "attnc_wgmma_8warps_tflops"])
        writer.writerows(rows)
    if backward_rows:
        with open(args.csv.replace(".csv", "-backward.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "attnc_sm90a_tflops", "sdpa_flash_tflops", "flex_tflops"])
            writer.writerows(backward_rows)
    if decode_rows:
        decode_csv = args.csv.replace(".csv", "-decode.csv")
        with open(decode_csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case"] + [f"attnc{column}_us" for column, _, _ in DECODE_VARIANTS]
                            + ["sdpa_us", "attnc_split_gbps", "attnc_auto_gbps",
                               "attnc_pack_auto_gbps", "sdpa_gbps"])
            writer.writerows(decode_rows)
    if args.png:
        plot(rows, args.png)
    return 0


def backward(attnc, sdpa_kernel, backend, flex, create_block_mask):
    """The backward kernels (prepare.sh: LABEL_bwd, 2.5 times the forward's
    FLOPs) against the backward of SDPA's flash kernel and of FlexAttention:
    dQ, dK and dV of a forward whose graph is kept, timed alone."""
    print(f"{'backward case':<24}{'attnc sm_90a':>14}{'sdpa flash':>12}{'flex':>10}"
          f"{'vs sdpa':>9}{'vs flex':>9}")
    rows = []
    for d in (64, 128):
        for n in (1024, 4096, 16384):
            for causal in (False, True):
                b = 16384 // n
                q, k, v = (torch.randn(b, 16, n, d, device="cuda", dtype=torch.bfloat16,
                                       requires_grad=True) for _ in range(3))
                d_o = torch.randn(b, 16, n, d, device="cuda", dtype=torch.bfloat16)
                flops = 10 * b * 16 * n * n * d // (2 if causal else 1)
                label = f"{'causal' if causal else 'dense'}_d{d}_n{n}_bwd"

                def gradients(o):
                    return lambda: torch.autograd.grad(o, (q, k, v), d_o, retain_graph=True)

                with sdpa_kernel(backend.FLASH_ATTENTION):
                    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    sdpa = tflops(flops, time_ms(gradients(o)))
                flex_tf = 0.0
                if flex is not None:
                    mask = (create_block_mask(lambda b_, h, i, j: i >= j, None, None, n, n)
                            if causal else None)
                    flex_tf = tflops(flops, time_ms(gradients(flex(q, k, v, block_mask=mask))))
                ours = attnc.get((label, "sm_90a"), 0.0)
                rows.append([label, ours, sdpa, flex_tf])
                print(f"{label:<24}{ours:>14.1f}{sdpa:>12.1f}{flex_tf:>10.1f}"
                      f"{ours / sdpa if sdpa else 0:>9.2f}{ours / flex_tf if flex_tf else 0:>9.2f}")
    return rows


# The decode variants prepare.sh times: CSV column suffix, image suffix and
# table heading.
DECODE_VARIANTS = [
    ("", "", "attnc"), ("_split", "_split", "split"), ("_wgmma_split", "_wg_split", "wg split"),
    ("_auto", "_auto", "auto"), ("_wgmma_auto", "_wg_auto", "wg auto"),
    ("_1warp_auto", "_w1_auto", "w1 auto"), ("_pack", "_pack", "pack"),
    ("_pack_auto", "_pack_auto", "pk auto"), ("_1warp_pack_auto", "_w1_pack_auto", "w1 pk au"),
    ("_wgmma_pack_auto", "_wg_pack_auto", "wg pk au"),
]


def decode(attnc_ms, sdpa_kernel, backend):
    """Decoding cases (prepare.sh: decode_d128_bB_mM and its variants, in
    microseconds) against SDPA (flash, or whatever backend takes GQA
    decode)."""
    print(f"{'decode case':<24}" + "".join(f"{heading:>10}" for _, _, heading in DECODE_VARIANTS)
          + f"{'sdpa us':>10}{'split GB/s':>12}{'auto GB/s':>11}{'pk au GB/s':>11}"
          f"{'sdpa GB/s':>11}")
    rows = []
    for m in (4096, 16384, 65536):
        for b in (1, 8):
            label = f"decode_d128_b{b}_m{m}"
            q = torch.randn(b, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
            k, v = (torch.randn(b, 8, m, 128, device="cuda", dtype=torch.bfloat16)
                    for _ in range(2))
            try:
                with sdpa_kernel([backend.FLASH_ATTENTION, backend.EFFICIENT_ATTENTION]):
                    sdpa_us = 1e3 * time_ms(
                        lambda: torch.nn.functional.scaled_dot_product_attention(
                            q, k, v, enable_gqa=True))
            except Exception as error:
                print(f"peers: SDPA GQA decode unavailable ({error})")
                sdpa_us = 0.0
            times = {image: 1e3 * attnc_ms.get((label + image, "sm_90a"), 0.0)
                     for _, image, _ in DECODE_VARIANTS}
            kv_bytes = 2 * b * 8 * m * 128 * 2

            def gbps(us):
                return kv_bytes / us / 1e3 if us else 0.0

            bandwidth = [gbps(times["_split"]), gbps(times["_auto"]),
                         gbps(times["_pack_auto"]), gbps(sdpa_us)]
            rows.append([label] + list(times.values()) + [sdpa_us] + bandwidth)
            print(f"{label:<24}" + "".join(f"{us:>10.1f}" for us in times.values())
                  + f"{sdpa_us:>10.1f}{bandwidth[0]:>12.0f}"
                  + "".join(f"{value:>11.0f}" for value in bandwidth[1:]))
    return rows


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as error:
        print(f"peers: matplotlib unavailable ({error}); no plot")
        return
    panels = [("dense", "_d64_"), ("causal", "_d64_"), ("ssd", "_d64_"),
              ("dense", "_d128_"), ("causal", "_d128_"), ("ssd", "_d128_"),
              ("gla", "_")]
    figure, axes = plt.subplots(3, 3, figsize=(13, 10))
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    series = [("attnc sm_90a", 1), ("attnc, 32 rows per warp", 5), ("attnc wgmma", 9),
              ("attnc wgmma, 8 warps", 10), ("SDPA flash", 2),
              ("FlexAttention", 3), ("flash-linear-attention", 4)]
    for axis, (kind, dims) in zip(axes.flat, panels):
        picked = [r for r in rows if r[0].startswith(kind + dims)]
        lengths = [int(r[0].rsplit("_n", 1)[1]) for r in picked]
        for name, index in series:
            values = [r[index] for r in picked]
            if any(values):
                axis.plot(lengths, values, marker="o", label=name)
        head = f"head dim {dims.strip('_d')}" if dims != "_" else "Dk 64, Dv 128"
        axis.set_title(f"{kind}, {head}")
        axis.set_xscale("log", base=2)
        axis.set_ylabel("TFLOP/s")
        axis.set_xlabel("sequence length")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"bf16, 16K tokens per batch, 16 heads ({torch.cuda.get_device_name()})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"peers: plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
