"""The VAE baseline on MNIST with the WAE paper's networks and optimizer.

Gaussian encoder, Bernoulli decoder (logits: the cross-entropy, WAE paper
section 4 and appendix C.1), prior N(0, I), beta 1; lambda is unused. The
encoder and the logits are the VAE's required values, applied by _wae_paper.
Every value and its source: configs/paper_settings.md.
"""

from configs import _wae_paper
from configs import _runlocal


def get_config(arg=None):
  config = _wae_paper.mnist("vae")
  config.vae.likelihood = "bernoulli"
  config.vae.beta = 1.0
  return _runlocal.finalize(config, arg)
