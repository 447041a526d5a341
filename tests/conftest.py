"""Test setup: 8 fake CPU devices (before JAX is imported) so that the
data-parallel code is exercised on any machine."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent compilation cache per test session, shared by the xdist
# workers (they inherit this environment) and the trainers they start as
# subprocesses: runs of the same config across tests compile once. Fresh per
# session, so no result depends on an earlier session's programs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="wae_jax_test_jax_cache_")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  # Only the process that made the folder (pytest itself, or its xdist
  # controller) removes it, after every worker and subprocess has ended.
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)


def pytest_configure(config):
  # `pytest -m "not slow"` is the quick subset named in the README.
  config.addinivalue_line(
      "markers", "slow: trains, compiles full networks or runs subprocesses for more than a "
      "few seconds (the CLI, killed and resumed runs, several processes); deselect with "
      "-m 'not slow'")
