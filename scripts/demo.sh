#!/usr/bin/env bash
# Set up .venv from nothing, then train the bundled tiny classification recipe on CPU
# through the host's own `llamafactory-cli train`, with the pack's features on.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISABLE_VERSION_CHECK=1
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/llamafactory-ext demo "$@"
