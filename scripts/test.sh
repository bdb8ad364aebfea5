#!/usr/bin/env bash
# Set up a venv from nothing (host + pins + this package's wheel) and run the test suite against it.
#   bash scripts/test.sh                 # the PyPI release 0.9.5 (.venv)
#   HOST=head bash scripts/test.sh       # the development head 0.9.6.dev0 wheel (.venv-head)
#   HOST=editable bash scripts/test.sh   # the head installed editable from its source tree (.venv-editable)
# Extra arguments go to pytest (e.g. tests/test_patches_train.py -k gate).
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-release}
case "$HOST" in release) VENV=${VENV:-.venv} ;; head) VENV=${VENV:-.venv-head} ;; *) VENV=${VENV:-.venv-$HOST} ;; esac
export HOST VENV
start=$(date +%s)
if [ -z "${SKIP_SETUP:-}" ]; then   # SKIP_SETUP=1: the venv was just set up (.ci/run)
  bash scripts/setup_env.sh
  echo "setup ($HOST): $(( $(date +%s) - start )) s"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DISABLE_VERSION_CHECK=1 WANDB_DISABLED=true
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/pytest" -v --durations=15 "$@"
