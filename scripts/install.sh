#!/usr/bin/env bash
# Install harness-opt with the embedded local model into the current Python environment.
#   bash scripts/install.sh          # the tool + embedded model
#   bash scripts/install.sh --dev    # ... plus test and lint tools
# llama-cpp-python ships only as source on PyPI, so pip compiles it (6-8 minutes on 2 cores, once;
# pip caches the wheel). On x86-64 we build a portable binary: llama.cpp's native build detects AMX on
# some server CPUs and then crashes (`ldtilecfg`), so native tuning is off and AVX2/FMA are on.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras="local"
[ "${1:-}" = "--dev" ] && extras="local,dev"

apt_install() {  # Debian/Ubuntu as root only; elsewhere print what to install
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@"; }
  else
    echo "note: please install $* with your package manager" >&2
  fi
}
if ! command -v bwrap >/dev/null 2>&1; then
  echo "installing bubblewrap (the sandbox for harness code)"
  apt_install bubblewrap
fi
if [ "${1:-}" = "--dev" ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
  echo "installing headless chromium + chromedriver (the HTML report's browser test)"
  apt_install chromium chromium-driver
fi

if [ -z "${CMAKE_ARGS:-}" ] && [ "$(uname -m)" = "x86_64" ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi
echo "installing harness-opt[$extras] (first install compiles llama-cpp-python: several minutes)"
"$PY" -m pip install --disable-pip-version-check -q -e ".[$extras]"
if [ "${1:-}" = "--dev" ]; then
  # The training-loop domain's tests need PyTorch (CPU is enough) and Ray. torch is pinned to a release
  # whose CPU wheel is small; an unpinned `torch` pulls a multi-GB CUDA build.
  echo "installing torch (CPU) and ray for the training-loop domain"
  "$PY" -m pip install --disable-pip-version-check -q "torch==2.13.0" "ray==2.60.0"
fi
"$PY" -c "import llama_cpp" || { echo "llama-cpp-python failed to import; see the README's troubleshooting" >&2; exit 1; }
# Harness code only ever runs in bubblewrap (evaluation refuses otherwise): say now if it cannot run here.
if ! "$PY" -m harness_opt.runtime.sandbox; then
  if [ "${1:-}" = "--dev" ]; then exit 1; fi  # CI and tests: the security tests would all fail
  echo "WARNING: evaluation will refuse to run harness code until bubblewrap works (see above)" >&2
fi
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true  # make the new `harness-opt` script visible
echo "installed: $(command -v harness-opt || echo "harness-opt (add your Python's bin dir to PATH)")"
