"""Experiment configs (ml_collections), one file per experiment.

Each file defines `get_config(arg=None)`; `python -m wae_jax.main
--config=configs/<x>.py[:arg]` loads it by path, and the files import their
shared pieces as `from configs import _runlocal, _wae_paper, ...`; the schema
itself (every field and default) is the library's, wae_jax/config.py.
configs/bigwae.py also defines its random sweep (see launch/sampling.py).
"""
