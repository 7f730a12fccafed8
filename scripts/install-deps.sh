#!/usr/bin/env bash
# install-deps.sh — the Debian packages llmrt builds and tests with (run as root; once).
# The CUDA backend also needs the CUDA toolkit (nvcc, cuBLASLt); without it the build is CPU-only.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends build-essential cmake pkg-config \
  libjansson-dev libpcre2-dev libutf8proc-dev libedit-dev python3 python3-matplotlib strace tmux >/dev/null
