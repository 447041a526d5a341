"""wae-jax: Wasserstein and momentum-contrastive autoencoders in JAX/Flax."""

from setuptools import find_packages, setup

TFDS_REQUIRES = ["tensorflow-datasets>=4.9.4", "tensorflow-cpu>=2.16", "importlib_resources>=6.0"]

setup(
    name="wae_jax",
    version="0.1.0",
    description="JAX/Flax library and trainer for optimal-transport autoencoders "
    "(WAE-MMD, WAE-GAN, VAE, MoCA, sliced/Sinkhorn/Cramér-Wold baselines).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["wae_jax", "wae_jax.*", "launch", "launch.*"]),
    # The pinned feature nets of fd_<dataset>_classifier and the MNIST fetch script.
    package_data={"wae_jax.evaluation": ["feature_nets/*.npz"],
                  "wae_jax.experiments": ["get_mnist.sh"]},
    python_requires=">=3.10",
    install_requires=[
        "absl-py>=1.4",
        "numpy>=1.26",
        "scipy>=1.11",
        "jax>=0.7",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "chex>=0.1.88",
        "ml-collections>=0.1.1",
        "pillow>=10.0",
        "tensorboardX>=2.6",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
    ],
    extras_require={
        # The tfds datasets (mnist, cifar10, celeb_a, ...); the offline ones need none of it.
        # tfds needs tensorflow and importlib_resources at run time but does not declare them.
        "tfds": TFDS_REQUIRES,
        # The tfds tests build mock datasets with tensorflow.
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "chex>=0.1.88", "ray[default]>=2.9"]
                + TFDS_REQUIRES,
        "ray": ["ray[default]>=2.9"],
    },
)
