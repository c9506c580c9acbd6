#!/usr/bin/env bash
# Build traker's fast_jl CUDA kernels (D-TRAK's projection) for the torch in .venv.
#
#   make setup-fast-jl                     on a GPU machine with nvcc on PATH
#   TORCH_CUDA_ARCH_LIST="8.0;9.0" make setup-fast-jl    for other GPU models than this one
#
# fast-jl 0.1.3 is an sdist whose setup.py imports torch (so pip's build isolation, which hides
# the installed torch, cannot build it) and hard-codes TORCH_CUDA_ARCH_LIST="7.0+PTX" (which
# CUDA 13's nvcc rejects: it dropped compute_70). This script fetches the sdist, lets the
# environment choose the architectures (default: this machine's GPU, +PTX), and builds it
# against the installed torch without isolation. Optional: projection: sparse needs none of it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
VERSION=0.1.3
$PY - <<'PY' || { echo "[dabench] fast_jl needs a CUDA build of torch (make setup GPU=1) and a GPU" >&2; exit 1; }
import torch
assert torch.version.cuda, "torch has no CUDA"
PY
command -v nvcc >/dev/null || { echo "[dabench] fast_jl needs nvcc (the CUDA toolkit) on PATH" >&2; exit 1; }
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$($PY -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}.{n}+PTX')")
fi
export TORCH_CUDA_ARCH_LIST
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The sdist itself (pip download would run its setup.py, which needs what we are setting up).
url=$($PY - "$VERSION" <<'PY'
import re, sys, urllib.request
page = urllib.request.urlopen("https://pypi.org/simple/fast-jl/").read().decode()
print(next(u for u in re.findall(r'href="([^"]+)"', page) if f"fast_jl-{sys.argv[1]}.tar.gz" in u))
PY
)
$PY - "$url" "$work/fast_jl.tar.gz" <<'PY'
import hashlib, sys, urllib.request
url, out = sys.argv[1], sys.argv[2]
data = urllib.request.urlopen(url.split("#")[0]).read()
want = url.split("#sha256=")[1] if "#sha256=" in url else None
if want and hashlib.sha256(data).hexdigest() != want:
    sys.exit(f"fast_jl sdist checksum mismatch ({url})")
open(out, "wb").write(data)
PY
tar xzf "$work/fast_jl.tar.gz" -C "$work"
src="$work/fast_jl-$VERSION"
sed -i "s/^environ\['TORCH_CUDA_ARCH_LIST'\]=\"7.0+PTX\"/environ.setdefault('TORCH_CUDA_ARCH_LIST', '8.0+PTX')/" "$src/setup.py"
grep -q "environ.setdefault('TORCH_CUDA_ARCH_LIST'" "$src/setup.py" || { echo "[dabench] fast_jl setup.py changed: patch not applied" >&2; exit 1; }
echo "[dabench] building fast_jl $VERSION for CUDA architectures $TORCH_CUDA_ARCH_LIST"
$PY -m pip install --no-build-isolation --no-deps "$src"
$PY -c "import torch, fast_jl; x = torch.zeros(8, 1000, device='cuda'); fast_jl.project_rademacher_8(x, 512, 0, 108); print('[dabench] fast_jl works')"
