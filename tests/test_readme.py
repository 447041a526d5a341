"""What the README promises: its "Use it from your own code" example runs as
a user would (the exact code block, in a fresh process, from a directory
outside the repository, with only the installed package importable), and its
table of methods is the registry's."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import setuptools

from wae_jax import config as wae_config
from wae_jax import methods

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Use it from your own code"


def installed_copy(site) -> str:
  """The Python files of the packages setup.py installs (wae_jax and its
  subpackages, as setuptools finds them), copied to `site`, as pip would."""
  for package in setuptools.find_packages(REPO_ROOT, include=["wae_jax", "wae_jax.*"]):
    source = os.path.join(REPO_ROOT, *package.split("."))
    target = os.path.join(site, *package.split("."))
    os.makedirs(target)
    for name in os.listdir(source):
      if name.endswith(".py"):
        shutil.copy(os.path.join(source, name), target)
  return site


def readme_snippet() -> str:
  """The first python code block of the README's SECTION."""
  with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
    text = f.read()
  section = text[text.index(SECTION):]
  return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.slow
def test_readme_snippet_runs_outside_the_repository(tmp_path):
  site = installed_copy(tmp_path / "site-packages")
  work = tmp_path / "elsewhere"
  work.mkdir()
  (work / "snippet.py").write_text(readme_snippet())
  check = ("import runpy, sys, wae_jax\n"
           f"assert wae_jax.__file__.startswith({str(site)!r}), wae_jax.__file__\n"
           "runpy.run_path('snippet.py', run_name='__main__')\n"
           "assert 'configs' not in sys.modules\n")
  env = dict(os.environ, PYTHONPATH=str(site))
  result = subprocess.run([sys.executable, "-c", check], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  losses = [float(line.split()[1]) for line in lines[:-1]]
  assert len(losses) == 3 and losses[-1] < losses[0] / 2, lines
  assert lines[-1] == "(16, 8, 8, 1) (16, 4)"


@pytest.mark.parametrize("name", methods.names())
def test_a_plain_array_for_a_batch_is_one_clear_error(name):
  images = np.zeros((4, 8, 8, 1), np.float32)
  method = methods.get(name)
  config = wae_config.for_method(name)
  with pytest.raises(TypeError, match=r"A batch is a dict \{'image': float32 array "
                     r"\(B, H, W, C\) in \[0, 1\]\}, got an array of shape \(4, 8, 8, 1\)"):
    method.init(config, None, images)
  with pytest.raises(TypeError, match=r"batch\['image'\] must be \(B, H, W, C\), got shape "
                     r"\(4, 64\)"):
    method.init(config, None, {"image": images.reshape(4, 64)})


def test_readme_table_lists_every_registered_method():
  with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
    rows = re.findall(r"^\| `(\w+)` \|", f.read(), re.MULTILINE)
  assert sorted(set(rows) & set(methods.names())) == sorted(methods.names()), rows


def test_ci_runs_exactly_the_readmes_test_command():
  with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
    commands = [line for line in f.read().splitlines()
                if line.startswith("python3 -m venv") and "pytest" in line]
  with open(os.path.join(REPO_ROOT, ".ci", "run"), encoding="utf-8") as f:
    ci_lines = [line for line in f.read().splitlines() if line.startswith("python3 -m venv")]
  assert len(commands) == 1 and ci_lines == commands
  assert "-c constraints.txt" in commands[0]
