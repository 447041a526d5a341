"""The experiment configs and the config checks (one clear sentence each)."""

import importlib
import os

import pytest

from configs import _runlocal
from configs import default
from wae_jax import config_checks
from wae_jax import methods
from wae_jax import train

PAPER_CONFIGS = ("mnist_wae_mmd", "mnist_wae_gan", "mnist_vae", "celeba_wae_mmd",
                 "celeba_wae_gan", "celeba_vae", "cifar10_moca_a1", "cifar10_moca_a2",
                 "celeba_moca_a1", "celeba_moca_a2", "celebahq_moca", "swae_mnist",
                 "swae_fashion_mnist", "swae_cifar10", "swae_digits", "swae_gmm2d")


def load(name, arg=None):
  return importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_pass_the_value_checks(name):
  config = load(name)
  assert set(config.to_dict()) == set(default.base_config().to_dict())
  config_checks.check_values(config, num_devices=1)
  small = load(name, "runlocal")
  assert small.num_train_steps == _runlocal.RUNLOCAL_STEPS
  assert small.model.width_multiplier < 1 and max(small.model.hidden_sizes) <= 32
  config_checks.check_values(small, num_devices=8)
  assert small.moca.queue_size % small.batch_size == 0


def test_paper_settings():
  mnist = load("mnist_wae_mmd")
  assert (mnist.latent_dim, mnist.batch_size, mnist.lambda_reg) == (8, 100, 10.0)
  assert mnist.optimizer.schedule == "wae_piecewise" and mnist.model.network == "dcgan"
  assert mnist.num_train_steps == 100 * 600  # 100 epochs
  for name, lam in (("celeba_wae_mmd", 100.0), ("celeba_wae_gan", 1.0)):
    celeba = load(name)
    assert (celeba.latent_dim, celeba.lambda_reg) == (64, lam)
    assert celeba.num_train_steps == 55 * (162_770 // 100)  # 55 epochs
  for name, lam, k, net in (("cifar10_moca_a1", 2000.0, 29952, "dcgan"),
                            ("cifar10_moca_a2", 100.0, 29952, "resnet18"),
                            ("celeba_moca_a1", 1000.0, 59968, "dcgan"),
                            ("celeba_moca_a2", 100.0, 59968, "resnet18")):
    moca = load(name)
    assert (moca.lambda_reg, moca.moca.queue_size, moca.model.network) == (lam, k, net)
    assert (moca.moca.temperature, moca.moca.momentum_base, moca.batch_size) == (0.05, 0.99, 64)
    assert moca.optimizer.learning_rate == 1e-3
  hq = load("celebahq_moca")
  assert (hq.image_size, hq.model.network, hq.lambda_reg, hq.moca.queue_size) == (
      256, "resnet6", 20000.0, 29952)
  assert (hq.moca.temperature, hq.optimizer.learning_rate) == (1.0, 2e-3)
  with pytest.raises(ValueError, match="unknown config argument 'fast'"):
    load("mnist_wae_mmd", "fast")


def test_swae_paper_settings():
  for name, dataset, latent in (("swae_mnist", "mnist", 40),
                                ("swae_fashion_mnist", "fashion_mnist", 40),
                                ("swae_cifar10", "cifar10", 512)):
    config = load(name)
    assert (config.method, config.dataset, config.latent_dim) == ("swae", dataset, latent)
    swae = config.swae
    assert (swae.num_pseudo_inputs, swae.objective, swae.beta, swae.z_loss_weight) == (
        4000, "xzrec", 0.5, 1.0)
    assert tuple(swae.prior_logvar_clip) == (-6.0, 2.0) and swae.pairing == "data"
    assert (config.batch_size, config.optimizer.learning_rate, config.optimizer.b1) == (
        100, 5e-4, 0.9)
    assert config.optimizer.normalize_gradients and config.seed == 14
    # The code's test protocol: binarised MNIST / Fashion-MNIST test images,
    # the best checkpoint evaluated (configs/paper_settings.md).
    assert config.swae.binarize_test == (dataset != "cifar10")
    assert config.evaluation.final_checkpoint == "best"
  assert load("swae_mnist").num_train_steps == 200 * 600  # 200 epochs
  cifar = load("swae_cifar10")
  assert tuple(cifar.keep_labels) == (2, 3, 8) and cifar.num_train_steps == 200 * 150
  gmm = load("swae_gmm2d")
  assert (gmm.dataset, gmm.model.decoder_output, gmm.swae.objective) == ("gmm2d", "linear", "xz")
  assert tuple(gmm.swae.prior_logvar_clip) == (-9.0, -3.2) and not gmm.swae.clip_pseudo_inputs
  assert load("swae_mnist", "runlocal").swae.num_pseudo_inputs <= 4 * _runlocal.RUNLOCAL_BATCH


@pytest.mark.slow
@pytest.mark.parametrize("name,image_shape", [
    ("mnist_wae_gan", (28, 28, 1)), ("cifar10_moca_a2", (32, 32, 3)),
    ("celeba_moca_a1", (64, 64, 3)), ("celebahq_moca", (256, 256, 3)),
    ("swae_cifar10", (32, 32, 3))])
def test_runlocal_networks_take_their_image_size(name, image_shape):
  config_checks.check_networks(load(name, "runlocal"), image_shape)


def _tiny():
  config = default.base_config()
  config.batch_size = 16
  config.model.hidden_sizes = (8,)
  config.num_train_steps = 2
  return config


def _set(config, dotted, value):
  node = config
  *parents, leaf = dotted.split(".")
  for name in parents:
    node = node[name]
  node[leaf] = value


BAD_VALUES = [
    ("method", "wae_xyz", r"Unknown config\.method 'wae_xyz'; use one of .*wae_mmd"),
    ("model.network", "vgg", r"Unknown config\.model\.network 'vgg'"),
    ("dataset", "imagenet", r"Unknown config\.dataset 'imagenet'"),
    ("regularizer", "kl", r"Unknown config\.regularizer 'kl'"),
    ("model.encoder", "flow", r"Unknown config\.model\.encoder 'flow'"),
    ("prior", "laplace", r"Unknown config\.prior 'laplace'"),
    ("lambda_reg", -1.0, r"config\.lambda_reg must be a finite number >= 0"),
    ("latent_dim", 0, r"config\.latent_dim must be an integer >= 1, got 0"),
    ("batch_size", 12, r"config\.batch_size=12 is not divisible by the 8 devices"),
    ("best_metric", "sharpness_samples", r"best_metric='sharpness_samples' is not a lower-is-better"),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value_stops_the_run_before_any_compute(field, value, message, tmp_path):
  config = _tiny()
  _set(config, field, value)
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_queue_not_a_multiple_of_the_batch(tmp_path):
  config = _tiny()
  config.method = "moca"
  methods.apply_required(config)
  config.moca.queue_size = 1000
  config.batch_size = 24
  with pytest.raises(ValueError, match=r"queue_size \(1000\) must be a positive multiple of "
                     r"the global batch size config\.batch_size \(24\)"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_image_size_the_network_cannot_take(tmp_path):
  config = _tiny()
  config.model.network = "dcgan"
  config.model.width_multiplier = 1 / 16
  config.image_size = 10
  with pytest.raises(ValueError, match=r"config\.model\.network='dcgan' cannot take 10x10x1 images"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_missing_fid_weights_stop_the_run_before_training(tmp_path, monkeypatch):
  monkeypatch.delenv("WAE_JAX_FID_WEIGHTS", raising=False)
  config = _tiny()
  config.best_metric = "fid_inception"
  with pytest.raises(ValueError, match="FID needs the InceptionV3 weights file"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")
