"""SWAE on the 2-D Gaussian mixture of the paper's Figure 1 (gmm2d), with MLPs.

Run with `python -m wae_jax.experiments.swae_gmm2d` (not wae_jax.main: the
"images" are 2-D points, shown as a scatter plot, not image grids). From the
released code (github.com/sunsunyyl/SWAE): the MLP WAE's objective
beta * x_loss + z_loss (models/MLP_wae.py:150, beta 1 by default,
experiment.py:54), its prior encoder's log-variance clip [-9, -3.2]
(models/MLP_wae.py:69), pseudo-inputs without the [0, 1] clip for gmm data
(models/Model.py:23-24) that start as training points without noise
(utils/load_data.py:796-799), K 100 (experiment.py:95), Adam lr 5e-4, beta1
0.9, batch 100. Our choices: latent 2 (so the prior can be drawn), ReLU MLPs
(300, 300) for the code's gated dense layers, 10,000 points, 3000 steps.
"""

from configs import _swae_paper
from configs import _runlocal


def get_config(arg=None):
  config = _swae_paper.swae("gmm2d", 1, 2, 10_000)
  config.synthetic_num_points = 10_000
  config.model.network = "mlp"
  config.model.hidden_sizes = (300, 300)
  config.model.decoder_output = "linear"
  config.swae.num_pseudo_inputs = 100
  config.swae.objective = "xz"
  config.swae.beta = 1.0
  config.swae.prior_logvar_clip = (-9.0, -3.2)
  config.swae.clip_pseudo_inputs = False
  config.swae.pseudo_input_init_std = 0.0
  config.num_train_steps = 3000
  config.log_every_steps = 500
  return _runlocal.finalize(config, arg)
