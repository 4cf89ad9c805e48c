"""Trains a small model whose attention is a gated linear attention spec
on the CPU: Mamba2/SSD-style (one data-dependent decay per head and step)
or, with --gla, GLA-style (one per head, step and key dimension).

The model: token and position embeddings, two layers of linear attention
whose log decay a = -softplus(x W) the model computes from its input, and
an MLP each, then logits. The task is synthetic: at every position,
predict the token two places back. The attention is
`attnc.compile(SPECS[gate]).torch_op()` on target "cpu": its chunkwise
backward gives the gradients of q, k, v and of the decays, through which W
learns.

    PYTHONPATH=build/python python3 examples/train_gated_linear.py [--steps 300] [--gla]
    PYTHONPATH=build/python python3 examples/train_gated_linear.py --torch   # the recurrence in PyTorch

Prints the loss every 25 steps; with --torch the attention is the
recurrence written with torch ops and differentiated by autograd, for
comparison (test/python/test_training_example.py checks that both learn
and agree).
"""

from __future__ import annotations

import argparse

import torch

SPECS = {
    "ssd": """
kernel ssd(q: f32[B, H, T, D], k: f32[B, H, T, D], v: f32[B, H, T, D],
           a: f32[B, H, T]) -> (o: f32[B, H, T, D]) {
  o = linear(q, k, v) {
    gate  = a[b, h, t]
    scale = 0.25
    chunk = 8
  }
}
""",
    "gla": """
kernel gla(q: f32[B, H, T, D], k: f32[B, H, T, D], v: f32[B, H, T, D],
           a: f32[B, H, T, D]) -> (o: f32[B, H, T, D]) {
  o = linear(q, k, v) {
    gate  = a[b, h, t, d]
    scale = 0.25
    chunk = 8
  }
}
""",
}

VOCAB, LENGTH, WIDTH, HEADS, LAG = 16, 24, 32, 2, 2


def attnc_attention(gate):
    import attnc

    return attnc.compile(SPECS[gate]).torch_op()


def torch_attention(q, k, v, a):
    """S_t = diag(exp(a_t)) S_{t-1} + k_t^T v_t, o_t = 0.25 q_t S_t (a_t one
    value per head, or one per key dimension)."""
    state = q.new_zeros(q.shape[0], q.shape[1], q.shape[-1], v.shape[-1])
    outputs = []
    for t in range(q.shape[2]):
        decay = torch.exp(a[:, :, t])[..., None]
        if a.dim() == 3:
            decay = decay[..., None]
        state = decay * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append(0.25 * (q[:, :, t, None, :] @ state).squeeze(-2))
    return torch.stack(outputs, 2)


class Layer(torch.nn.Module):
    def __init__(self, attention, gate):
        super().__init__()
        self.attention = attention
        self.qkv = torch.nn.Linear(WIDTH, 3 * WIDTH)
        self.per_key_dim = gate == "gla"
        self.decay = torch.nn.Linear(WIDTH, WIDTH if self.per_key_dim else HEADS)
        self.out = torch.nn.Linear(WIDTH, WIDTH)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(WIDTH, 2 * WIDTH), torch.nn.GELU(),
                                       torch.nn.Linear(2 * WIDTH, WIDTH))
        self.norm1, self.norm2 = torch.nn.LayerNorm(WIDTH), torch.nn.LayerNorm(WIDTH)

    def forward(self, x):
        b, n, _ = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).view(b, n, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        a = -torch.nn.functional.softplus(self.decay(h))  # <= 0
        if self.per_key_dim:
            a = a.view(b, n, HEADS, WIDTH // HEADS).transpose(1, 2)  # [b, heads, n, d]
        else:
            a = a.transpose(1, 2)  # [b, heads, n]
        o = self.attention(q.contiguous(), k.contiguous(), v.contiguous(), a.contiguous())
        x = x + self.out(o.transpose(1, 2).reshape(b, n, WIDTH))
        return x + self.mlp(self.norm2(x))


class Model(torch.nn.Module):
    def __init__(self, attention, gate):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, WIDTH)
        self.position = torch.nn.Parameter(0.1 * torch.randn(LENGTH, WIDTH))
        self.layers = torch.nn.ModuleList([Layer(attention, gate), Layer(attention, gate)])
        self.logits = torch.nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens):
        x = self.embed(tokens) + self.position[:tokens.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.logits(x)


def batch(generator, size=16):
    tokens = torch.randint(0, VOCAB, (size, LENGTH), generator=generator)
    targets = torch.roll(tokens, LAG, dims=1)
    targets[:, :LAG] = -100  # nothing to predict before the lag
    return tokens, targets


def train(steps: int, use_torch: bool = False, seed: int = 0, report=None, gate: str = "ssd") -> list[float]:
    """Returns the loss of every step; the model and the data depend on the
    seed and the gate kind only, so both attentions see the same run."""
    torch.manual_seed(seed)
    model = Model(torch_attention if use_torch else attnc_attention(gate), gate)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(seed + 1)
    losses = []
    for step in range(steps):
        tokens, targets = batch(data)
        loss = torch.nn.functional.cross_entropy(model(tokens).reshape(-1, VOCAB), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if report and (step % 25 == 0 or step == steps - 1):
            report(step, loss.item())
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--torch", action="store_true", help="the recurrence in PyTorch instead of attnc")
    parser.add_argument("--gla", action="store_true", help="GLA's decays per key dimension instead of per head")
    args = parser.parse_args()
    gate = "gla" if args.gla else "ssd"
    losses = train(args.steps, args.torch, report=lambda step, loss: print(f"step {step:4d}  loss {loss:.4f}"),
                   gate=gate)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} ({gate}, {'PyTorch recurrence' if args.torch else 'attnc'})")
