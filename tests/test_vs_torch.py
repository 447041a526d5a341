"""The PyTorch twin of benchmarks/vs_torch.py and vs_torch_gpu.py, on a CPU at tiny sizes.

PyTorch is an optional, benchmark-only dependency: without it these tests
are skipped. With it, each twin must hold exactly the parameters of the
trainer's networks (the same layers), train in every variant a PyTorch user
would pick (channels_last, autocast bfloat16), and the GPU benchmark must
run end to end on whatever device is here.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import conv_ops_vs_torch  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import vs_torch  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import vs_torch_gpu  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {  # the GPU table's workloads, shrunk
    "dcgan": {"method": "wae_mmd", "net": "dcgan", "width": 1 / 16, "batch": 8},
    "resnet18": {"method": "moca", "net": "resnet18", "width": 1 / 16, "batch": 8,
                 "queue": 32},
    "mlp": {"method": "wae_mmd", "net": "mlp", "width": 1.0, "batch": 8},
}


@pytest.fixture(scope="module", autouse=True)
def torch_threads():
  torch.set_num_threads(1)


@pytest.mark.parametrize("net", sorted(TINY))
def test_twin_has_the_trainers_parameters(net):
  spec = TINY[net]
  jax_side = vs_torch.JaxWorkload("step", spec)
  twin = vs_torch.TorchWorkload(torch, "step", vs_torch.twin_spec(spec))
  # BatchNorm's scale and offset are parameters on both sides; its running
  # statistics are state on both.
  assert twin.parameter_count() == jax_side.parameter_count
  if net != "mlp":
    assert jax_side.flops > 0


@pytest.mark.parametrize("variant", ["eager", "channels_last", "bf16_channels_last"])
@pytest.mark.parametrize("net", ["dcgan", "resnet18"])
def test_twin_trains_in_every_variant(net, variant):
  """A few Adam steps on one fixed batch lower the loss, in each layout and dtype."""
  twin = vs_torch.TorchWorkload(torch, "step", vs_torch.twin_spec(TINY[net]), variant)
  if twin.channels_last:
    weights = [m.weight for m in twin.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
  losses = [float(twin.iteration()) for _ in range(6)]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < losses[0]


@pytest.mark.slow
def test_gpu_benchmark_runs_end_to_end_here(tmp_path):
  """vs_torch_gpu.py --smoke: every workload, JAX in both dtypes against all
  three torch variants (torch.compile included), one round."""
  out = tmp_path / "rows.json"
  result = subprocess.run(
      [sys.executable, "benchmarks/vs_torch_gpu.py", "--smoke", "--only=MLP",
       f"--json={out}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  import json  # pylint: disable=g-import-not-at-top
  rows = json.loads(out.read_text())["rows"]
  assert [r["name"] for r in rows] == ["WAE-MMD MLP 256-256, batch 100 (smoke)"]
  row = rows[0]
  assert set(row["torch_ms"]) == {"eager", "bf16_channels_last", "compile_bf16_channels_last"}
  assert all(ms > 0 for ms in list(row["torch_ms"].values()) + list(row["jax_ms"].values()))
  # Each ratio is a median of torch / JAX over rounds; one round: exactly that quotient.
  assert row["ratio"]["eager"] == pytest.approx(row["torch_ms"]["eager"] / row["jax_ms"]["float32"])
  assert "| WAE-MMD MLP 256-256, batch 100 (smoke) |" in result.stdout
  assert len(vs_torch_gpu.WORKLOADS) == 5


def test_conv_ops_time_the_same_convolutions():
  """conv_ops_vs_torch.py's two sides compute the same three convolutions:
  torch's conv_transpose2d (padding 1, kernel flipped) and its gradients equal
  the trainer's conv_transpose_phase and its custom gradients."""
  x, w, dy = conv_ops_vs_torch.layer_data(3, 4, 5, batch=2, seed=1)
  ours = {op: np.asarray(fn()) for op, fn in conv_ops_vs_torch.jax_ops(x, w, dy).items()}

  def torch_values(x, w, dy):
    """torch's three results in the library's layouts."""
    theirs = {op: fn().detach().numpy() for op, fn in conv_ops_vs_torch.torch_ops(
        torch, *conv_ops_vs_torch.to_torch(torch, x, w, dy)).items()}
    return {"forward": theirs["forward"].transpose(0, 2, 3, 1),
            "input grad": theirs["input grad"].transpose(0, 2, 3, 1),
            "weight grad": theirs["weight grad"].transpose(2, 3, 0, 1)[::-1, ::-1]}

  expected = torch_values(x, w, dy)
  # Each entry is a float32 sum of at most n = 4 * 4 * 5 = 80 products; summed
  # in any order by either side, each differs from the exact sum by at most
  # n * 2^-24 * (the sum of the products' magnitudes), which is the same op
  # on the operands' absolute values.
  magnitudes = torch_values(np.abs(x), np.abs(w), np.abs(dy))
  for op, value in ours.items():
    assert value.shape == expected[op].shape, op
    bound = 2 * 80 * 2.0 ** -24 * magnitudes[op]
    assert np.all(np.abs(value - expected[op]) <= bound), op
