#!/usr/bin/env bash
# install-deps.sh — the Debian packages llmrt builds and tests with (run as root, from the
# repository root; once), and the tests' Python packages in .venv (PyPI).
# The CUDA backend also needs the CUDA toolkit (nvcc, cuBLASLt); without it the build is CPU-only.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends build-essential cmake pkg-config \
  libjansson-dev libpcre2-dev libutf8proc-dev libedit-dev libmicrohttpd-dev libcurl4-openssl-dev \
  python3 python3-venv python3-matplotlib curl strace tmux clang >/dev/null
# test-only Python packages in .venv: the official `openai` client for tests/cli/serve.sh;
# numpy, ml_dtypes and safetensors for scripts/quant_reference.py (tests/cli/quant.sh)
if [ ! -x .venv/bin/python ] ||
   ! .venv/bin/python -c 'import openai, numpy, ml_dtypes, safetensors' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check openai numpy ml_dtypes safetensors
fi
