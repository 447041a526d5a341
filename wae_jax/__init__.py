"""wae-jax: optimal-transport autoencoders in JAX/Flax."""

__version__ = "0.1.0"
