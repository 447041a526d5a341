"""The papers' claims as commands: python -m wae_jax.experiments.<name> --out=DIR.

  moca_fig1   MoCA Fig. 1: latent matching on the regulariser alone
  moca_fig2   MoCA Fig. 2: image-space convergence of MoCA and WAE-MMD over λ
  moca_fig3   MoCA Fig. 3: isotropy of the codes against λ
  moca_k_tau  MoCA Table 5 / Fig. 10: queue size K and temperature τ
  wae_vs_vae  WAE paper: WAE-MMD and WAE-GAN against the VAE
  swae_gmm2d  Symmetric WAE Fig. 1: SWAE with MLPs on a 2-D Gaussian mixture
              (--out is its PNG)

Each of the first five trains with the library's methods and trainer and
writes results.json and PNG plots under --out (see common.py);
wae_jax/experiments/README.md holds the measured results of the small
defaults.
"""
