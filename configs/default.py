"""The embedded default: WAE-MMD with an MLP on scikit-learn's 8x8 digits.

Runs offline (the digits ship with scikit-learn) in about a minute on 2 CPU
cores. The schema and every field's meaning are in wae_jax/config.py (shared
fields) and the method modules (their own fields); this file only picks them.
"""

from configs import _runlocal
from wae_jax.config import base_config


def get_config(arg=None):
  return _runlocal.finalize(base_config(), arg)
