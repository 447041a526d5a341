"""Test setup: 8 fake CPU devices (before JAX is imported) so that the
data-parallel code is exercised on any machine."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
  # `pytest -m "not slow"` is the quick subset named in the README.
  config.addinivalue_line(
      "markers", "slow: trains, compiles full networks or runs subprocesses for more than a "
      "few seconds (the CLI, killed and resumed runs, several processes); deselect with "
      "-m 'not slow'")
