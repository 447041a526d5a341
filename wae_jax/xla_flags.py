"""The XLA flags the trainer sets on a CPU-only machine (no JAX import here).

This jaxlib sends convolutions to YNNPACK by default; keeping YNNPACK for
reductions and single dots, and convolutions on Eigen, makes conv gradients
2-3x faster and the MLP-sized dots of the WAE-GAN adversary 1.3x faster on a
CPU. Copy insertion with region analysis drops the copies XLA otherwise makes
of Adam's moments before updating them in place: every MLP step 7-11% faster,
the same numbers (benchmarks/vs_torch.py).
"""

import importlib.util
import os

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=reduce,individual_dot "
             "--xla_cpu_copy_insertion_use_region_analysis=true")
ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                       "jax_rocm7_plugin", "libtpu")


def has_accelerator_plugin() -> bool:
  """Whether a GPU or TPU plugin of jax is installed (found without importing jax)."""
  return any(importlib.util.find_spec(name) for name in ACCELERATOR_PLUGINS)


def set_cpu_flags() -> None:
  """Sets XLA_FLAGS to CPU_FLAGS on a CPU-only machine. Must run before jax is
  imported; never overrides XLA_FLAGS a user set."""
  if "XLA_FLAGS" in os.environ:
    return
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms in ("", "cpu") and (platforms == "cpu" or not has_accelerator_plugin()):
    os.environ["XLA_FLAGS"] = CPU_FLAGS
