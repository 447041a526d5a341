"""The embedded default: WAE-MMD with an MLP on scikit-learn's 8x8 digits.

Runs offline (the digits ship with scikit-learn) in a few minutes on 2 CPU
cores. Every other config starts from `base_config()` and overrides fields, so
this file is also the reference for what each field means.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with defaults."""
  config = ml_collections.ConfigDict()
  config.method = "wae_mmd"          # wae_mmd | wae_gan | vae | moca | swae
  config.seed = 0

  # Data (wae_jax/data): images are float32 in [0, 1], NHWC.
  config.dataset = "digits"          # digits | mnist_idx | synthetic | gmm2d | mnist | fashion_mnist | cifar10 | celeb_a | celeb_a_hq
  config.data_dir = ""               # tfds data_dir or the idx folder; "" = library default
  config.image_size = 8              # square side the images are resized / padded to
  config.batch_size = 100            # global batch, split over all devices and hosts
  config.shuffle_buffer = 10_000
  config.synthetic_num_points = 1000
  config.keep_labels = ()            # labelled data only: keep the examples of these classes, e.g. (2, 3, 8)
  config.synthetic_dim = 100

  # Training length. steps_per_epoch <= 0: derived from the dataset size.
  config.num_train_steps = 3000
  config.steps_per_epoch = -1
  # Steps per compiled call (a lax.scan over that many stacked batches): one
  # dispatch serves them all (the default MLP's step on a CPU: 1.9 -> 1.4 ms).
  # Lowered to divide the log, eval and checkpoint periods and to keep a
  # call's batches under 64 MiB. Changes no number a run computes.
  config.steps_per_call = 100

  # Latent space and prior.
  config.latent_dim = 8
  config.prior = "gaussian"          # gaussian | sphere
  config.prior_var = 1.0

  # Networks (wae_jax/models).
  config.model = ml_collections.ConfigDict()
  config.model.network = "mlp"       # mlp | dcgan | gated | resnet18 | resnet6 | resnet50v2
  config.model.hidden_sizes = (256, 256)   # mlp only
  config.model.width_multiplier = 1.0      # conv nets: channel counts are scaled by this
  config.model.encoder = "deterministic"   # deterministic | gaussian | sphere
  config.model.decoder_output = "sigmoid"  # sigmoid (pixel means in [0, 1]) | logits (Bernoulli) | linear (unbounded, e.g. gmm2d points)
  config.model.logvar_clip = (-10.0, 5.0)  # gaussian encoder only
  config.model.batch_norm = True          # False: dcgan / resnet nets without batch norm
  config.model.dense_batch_norm = False   # dcgan: batch norm after the decoder's dense layer too (MoCA A1)
  config.model.upsample = "auto"           # auto | phase | transpose: how decoders do stride-2 upsampling
  config.model.dtype = "float32"           # float32 | bfloat16: compute dtype (params, optimizer, losses: float32)

  # Reconstruction cost and latent regularizer.
  config.reconstruction = "squared_error"  # c(x, G(E(x)))
  # Multiplies the reconstruction term of every method (the VAE's -log p(x|z)
  # too); 0 trains the latent regularizer alone. The WAE code's l2sq cost is
  # 0.05 * sum of squares (see configs/paper_settings.md).
  config.reconstruction_scale = 1.0
  config.regularizer = "mmd"         # wae_mmd only: mmd | sliced | sinkhorn | cramer_wold
  config.lambda_reg = 10.0           # λ (WAE, MoCA) weight on the regularizer
  config.mmd = ml_collections.ConfigDict()
  config.mmd.kernel = "imq"          # imq | rbf
  config.mmd.scales = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
  config.mmd.base_scale = 1.0        # IMQ scales used are s * base_scale
  config.sliced = ml_collections.ConfigDict({"num_projections": 64})
  config.sinkhorn = ml_collections.ConfigDict({"epsilon": 0.1, "num_iters": 50})
  config.cramer_wold = ml_collections.ConfigDict({"gamma": -1.0})  # <= 0: the CWAE paper's rule
  # WAE-MMD / WAE-GAN: before training, fit the codes' mean and covariance to
  # the prior's with a separate Adam (wae_jax/methods/pretraining.py).
  config.pretrain = ml_collections.ConfigDict()
  config.pretrain.enabled = False
  config.pretrain.sample_size = 1000  # images (and prior samples) per step
  config.pretrain.max_steps = 200
  config.pretrain.stop_loss = 0.1     # stop after the first step whose loss is below
  config.pretrain.learning_rate = -1.0  # <= 0: optimizer.learning_rate
  config.encoder_input_noise = 0.0   # std of truncated Gaussian noise on the encoder input
  # WAE-MMD / WAE-GAN with model.encoder="gaussian": codes z = mean + std * eps,
  # plus this weight times the L1 norm of the log-variances (Rubenstein et al. 2018).
  config.encoder_logvar_l1 = 0.0

  # WAE-GAN latent adversary.
  config.adversary = ml_collections.ConfigDict()
  config.adversary.hidden_sizes = (512, 512, 512, 512)
  config.adversary.learning_rate = 5e-4
  config.adversary.b1 = 0.5
  # Add log p_Z(z) to the adversary's logit (WAE paper, appendix C.2). Off as
  # in the released code's MNIST config (configs.py:95, gan_p_trick False),
  # the setting closest to these small runs; its CelebA config turns it on
  # (configs.py:43), as configs/celeba_wae_gan.py and bigwae.py do.
  config.adversary_log_prior = False

  # VAE.
  config.vae = ml_collections.ConfigDict()
  config.vae.beta = 1.0
  config.vae.likelihood = "bernoulli"  # bernoulli | gaussian
  config.vae.gaussian_var = 1.0

  # MoCA.
  config.moca = ml_collections.ConfigDict()
  config.moca.queue_size = 1000      # K, a multiple of the global batch
  config.moca.temperature = 0.05     # τ
  config.moca.momentum_base = 0.99   # m0 of the cosine momentum schedule
  config.moca.loss_form = "algorithm1"  # algorithm1 (cross-entropy) | eq6 (alignment + entropy)

  # Symmetric WAE (wae_jax/methods/swae.py): a prior of K pseudo-inputs and a
  # prior encoder, objective beta * x_loss + (1 - beta) * recon + λ * z_loss.
  config.swae = ml_collections.ConfigDict()
  config.swae.num_pseudo_inputs = 100      # K (the paper's runs: 4000)
  config.swae.objective = "xzrec"          # xzrec | xz | zrec
  config.swae.beta = 0.5
  config.swae.z_loss_weight = 1.0          # λ
  config.swae.pairing = "data"             # data | latent: where the nearest pseudo-input is found
  config.swae.pairing_metric = "l2"        # l2 | cosine
  config.swae.prior_logvar_clip = (-6.0, 2.0)
  config.swae.clip_pseudo_inputs = True    # pseudo-inputs pass through a clip to [0, 1]
  config.swae.pseudo_input_init_std = 0.01  # noise added to the K training images they start from
  # Binarise the test images once (fixed seed) as the SWAE code's MNIST and
  # Fashion-MNIST evaluation does; the training images stay grey.
  config.swae.binarize_test = False

  # Optimizer (encoder-decoder).
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b1 = 0.5
  config.optimizer.b2 = 0.999
  config.optimizer.normalize_gradients = False  # divide each gradient tensor by its L2 norm first (SWAE code's AdamNormGrad)
  config.optimizer.schedule = "constant"  # constant | wae_piecewise | step
  config.optimizer.decay_every_epochs = 30   # step schedule
  config.optimizer.decay_factor = 0.5        # step schedule
  config.optimizer.decay_until_epoch = 0     # step schedule: no decay after this epoch (0: none)

  # Loop, checkpoints, logging, evaluation.
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.best_metric = "test_reconstruction"  # lower is better
  config.eval_every_steps = 1000
  config.num_eval_images = 64
  # wae_jax/evaluation: every eval period computes the cheap metrics (test
  # reconstruction, latent MMD/SWD/singular values, sharpness (images only), and on labelled
  # data the latent k-NN / linear probe accuracies) and the group of
  # best_metric; the end of the run adds final_metrics (group names, or
  # "full" = everything this run can compute: classifier FD, image SWD, and
  # FID/KID when the Inception weights file is found).
  config.evaluation = ml_collections.ConfigDict()
  config.evaluation.final_metrics = ()     # e.g. ("fid_inception",) or ("full",)
  config.evaluation.num_samples = 10_000   # generated images for FID/KID/FD/SWD
  config.evaluation.fid_weights = ""       # Inception weights file ("" = env var / default)
  config.evaluation.cache_dir = ""         # feature-net cache ("" = library default)
  config.evaluation.swd_images = 4096
  # Latent probes (labelled data, every evaluation): k-NN and logistic
  # regression fitted on the codes of this many training images.
  config.evaluation.probe_train_examples = 10_000
  config.evaluation.probe_knn_neighbors = 5
  # Which state the final metrics are of: "last" (the end of training) or
  # "best" (the checkpoint with the lowest best_metric, as the SWAE code tests
  # its best-validation model); eval.jsonl's last line records its step.
  config.evaluation.final_checkpoint = "last"
  return config


def get_config(arg=None) -> ml_collections.ConfigDict:
  del arg
  config = base_config()
  config.lock()
  return config
