"""The training examples, shortened. examples/train_relative_bias.py: the
model whose attention is an attnc spec with learnable relative-bias tables
learns (its loss falls), and its losses follow those of the same model on
torch SDPA with the bias as an explicit mask, step by step (same seed, same
data; they differ only by float rounding, so within 1e-3 relative).
examples/train_gated_linear.py: the same for gated linear attention
(Mamba2/SSD's decays per head, GLA's per key dimension) against the
recurrence in PyTorch."""

import importlib.util
import pathlib
import os

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed; the training example is not tested")
if not hasattr(torch.library, "custom_op"):
    pytest.skip(f"torch {torch.__version__} has no torch.library.custom_op (needs >= 2.4)", allow_module_level=True)

EXAMPLES = pathlib.Path(os.environ.get("ATTNC_EXAMPLES", pathlib.Path(__file__).parents[2] / "examples"))


def test_training_example_learns_and_matches_sdpa():
    spec = importlib.util.spec_from_file_location("train_relative_bias", EXAMPLES / "train_relative_bias.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    steps, seed = 120, 0
    attnc_losses = example.train(steps, sdpa=False, seed=seed)
    sdpa_losses = example.train(steps, sdpa=True, seed=seed)
    start, end = sum(attnc_losses[:5]) / 5, sum(attnc_losses[-5:]) / 5
    assert end < 0.5 * start, f"seed {seed}: the loss did not fall: {start:.3f} -> {end:.3f}"
    for step, (ours, theirs) in enumerate(zip(attnc_losses, sdpa_losses)):
        assert abs(ours - theirs) <= 1e-3 * max(1.0, abs(theirs)), f"seed {seed}, step {step}: {ours} vs {theirs}"


@pytest.mark.parametrize("gate", ["ssd", "gla"])
def test_gated_linear_example_learns_and_matches_the_recurrence(gate):
    """examples/train_gated_linear.py, shortened: the model whose attention
    is a Mamba2/SSD-style or GLA-style spec (decays the model computes,
    learned through the chunkwise backward on target cpu) learns, and its
    first steps follow the same model on the recurrence written in PyTorch
    (same seed and data; float rounding apart, 1e-4 relative)."""
    spec = importlib.util.spec_from_file_location("train_gated_linear", EXAMPLES / "train_gated_linear.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    seed = 0
    attnc_losses = example.train(100, use_torch=False, seed=seed, gate=gate)
    torch_losses = example.train(30, use_torch=True, seed=seed, gate=gate)
    start, end = sum(attnc_losses[:5]) / 5, sum(attnc_losses[-5:]) / 5
    assert end < 0.6 * start, f"seed {seed}, {gate}: the loss did not fall: {start:.3f} -> {end:.3f}"
    for step, (ours, theirs) in enumerate(zip(attnc_losses, torch_losses)):
        assert abs(ours - theirs) <= 1e-4 * max(1.0, abs(theirs)), \
            f"seed {seed}, {gate}, step {step}: {ours} vs {theirs}"
