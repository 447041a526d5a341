"""Test setup: 8 fake CPU devices (before JAX is imported) so that the
data-parallel code is exercised on any machine."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Modules whose every test trains in subprocesses or several processes.
SLOW_MODULES = ("test_multihost.py", "test_launch_sweep.py", "test_experiments.py")


def pytest_configure(config):
  # `pytest -m "not slow"` is the quick subset named in the README.
  config.addinivalue_line(
      "markers", "slow: runs training in subprocesses (the CLI, killed and resumed runs); "
      "deselect with -m 'not slow'")


def pytest_collection_modifyitems(config, items):
  import pytest  # pylint: disable=g-import-not-at-top
  for item in items:
    if item.path.name in SLOW_MODULES:
      item.add_marker(pytest.mark.slow)
