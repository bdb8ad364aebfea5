#!/usr/bin/env bash
# Set up .venv from nothing (host + pins + this package's wheel) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DISABLE_VERSION_CHECK=1 WANDB_DISABLED=true
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/pytest -q "$@"
