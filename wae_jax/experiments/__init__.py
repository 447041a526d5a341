"""Experiments that are more than one trainer run: python -m wae_jax.experiments.<name>."""
