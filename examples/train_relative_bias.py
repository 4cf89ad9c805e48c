"""Trains a small model whose attention is an attnc spec, on the CPU.

The model: token embeddings, two causal attention layers with a learnable
relative-position bias table per layer (score = s + rel[h, i - j]) and an
MLP each, then logits. The task is synthetic: at every position, predict
the token three places back, which the bias tables make easy to find. The
attention is `attnc.compile(SPEC).torch_op()`: its backward gives the
gradients of q, k, v and of the bias table.

    PYTHONPATH=build/python python3 examples/train_relative_bias.py [--steps 300]
    PYTHONPATH=build/python python3 examples/train_relative_bias.py --sdpa   # the same model on torch SDPA

Prints the loss every 25 steps; with --sdpa the attention is PyTorch's
scaled_dot_product_attention with the bias as an explicit float mask, for
comparison (test/python/test_training_example.py checks that both learn and
agree).
"""

from __future__ import annotations

import argparse
import math

import torch

SPEC = """
kernel biased(q: f32[B, H, N, D], k: f32[B, H, N, D], v: f32[B, H, N, D],
              rel: f32[H, W]) -> (o: f32[B, H, N, D]) {
  o = softmax(q, k, v) {
    score = s + rel[h, i - j]
    mask  = causal
  }
}
"""

VOCAB, LENGTH, WIDTH, HEADS, LAG = 16, 24, 32, 2, 3


def attnc_attention():
    import attnc

    op = attnc.compile(SPEC).torch_op()
    return lambda q, k, v, rel: op(q, k, v, rel)


def sdpa_attention(q, k, v, rel):
    n = q.shape[2]
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    bias = rel[:, (i - j).clamp(min=0)].masked_fill(j > i, -math.inf)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class Layer(torch.nn.Module):
    def __init__(self, attention):
        super().__init__()
        self.attention = attention
        self.qkv = torch.nn.Linear(WIDTH, 3 * WIDTH)
        self.out = torch.nn.Linear(WIDTH, WIDTH)
        self.rel = torch.nn.Parameter(torch.zeros(HEADS, LENGTH))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(WIDTH, 2 * WIDTH), torch.nn.GELU(),
                                       torch.nn.Linear(2 * WIDTH, WIDTH))
        self.norm1, self.norm2 = torch.nn.LayerNorm(WIDTH), torch.nn.LayerNorm(WIDTH)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        o = self.attention(q.contiguous(), k.contiguous(), v.contiguous(), self.rel)
        x = x + self.out(o.transpose(1, 2).reshape(b, n, WIDTH))
        return x + self.mlp(self.norm2(x))


class Model(torch.nn.Module):
    def __init__(self, attention):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, WIDTH)
        self.layers = torch.nn.ModuleList([Layer(attention), Layer(attention)])
        self.logits = torch.nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.logits(x)


def batch(generator, size=16):
    tokens = torch.randint(0, VOCAB, (size, LENGTH), generator=generator)
    targets = torch.roll(tokens, LAG, dims=1)
    targets[:, :LAG] = -100  # nothing to predict before the lag
    return tokens, targets


def train(steps: int, sdpa: bool = False, seed: int = 0, report=None) -> list[float]:
    """Returns the loss of every step; the model and the data depend on the
    seed only, so both attentions see the same run."""
    torch.manual_seed(seed)
    model = Model(sdpa_attention if sdpa else attnc_attention())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
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
    parser.add_argument("--sdpa", action="store_true", help="torch SDPA with an explicit bias instead of attnc")
    args = parser.parse_args()
    losses = train(args.steps, args.sdpa, report=lambda step, loss: print(f"step {step:4d}  loss {loss:.4f}"))
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} ({'torch SDPA' if args.sdpa else 'attnc'})")
