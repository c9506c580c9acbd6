#!/usr/bin/env bash
# Installs the offline real datasets that do not come from PyPI: Debian's Fashion-MNIST package.
# Needs root (or sudo-free apt); otherwise says how to get it and how to point data.path at it.
set -u
target=/usr/share/datasets/fashion-mnist
if [ -f "$target/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[dabench] installing Debian package dataset-fashion-mnist (31 MB)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1
  fi
fi
if [ ! -f "$target/train-images-idx3-ubyte.gz" ]; then
  cat >&2 <<MSG
[dabench] Fashion-MNIST is not installed (optional: no shipped config needs it, only configs
          that name dataset: fashion_mnist). Install it with 'sudo apt-get install dataset-fashion-mnist', or put the four
          idx files in a folder and set data.path to it.
MSG
fi
exit 0
