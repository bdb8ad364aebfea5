#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the Python 3.12 wheels the GPU machine's image lacks for a real
# `llamafactory-cli train` with the pack (device tool: carry ".whl"), plus this package's wheel.
#   bash benchmarks/gpu_wheels.sh            # host stack + pack (~15 MB)
#   bash benchmarks/gpu_wheels.sh --bnb      # also bitsandbytes (43 MB; QLoRA / 8-bit optimizer configs)
#   bash benchmarks/gpu_wheels.sh --ds       # also DeepSpeed and its dependencies (~3 MB; the z3_* configs)
# On the device:  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#                   --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
rm -rf .whl && mkdir -p .whl
PY=${PYTHON:-python3}
PKGS=(llamafactory==0.9.5 transformers==5.6.0 peft==0.18.1 trl==0.24.0 accelerate==1.11.0 datasets==4.0.0
      tokenizers==0.22.2 omegaconf==2.4.0 dill==0.3.8 multiprocess==0.70.16
      torchdata==0.11.0 pydantic==2.12.3 pydantic-core==2.41.4 annotated-types==0.8.0 typing-inspection==0.4.5
      tyro==0.8.14 fire==0.7.1 termcolor==3.3.0 docstring-parser==0.18.0 shtab==1.13.0)
DS=0
for flag in "$@"; do
  case "$flag" in
    --bnb) PKGS+=(bitsandbytes==0.50.2) ;;
    --ds) DS=1; PKGS+=(hjson==3.1.0 msgpack==1.2.4 ninja==1.13.2 py-cpuinfo==9.0.0 einops==0.8.2) ;;
    *) echo "unknown flag: $flag (use --bnb, --ds)" >&2; exit 2 ;;
  esac
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
  -d .whl "${PKGS[@]}"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl . ./examples/lfx-example-plugin
# DeepSpeed publishes source only; built without ops it is one pure-Python wheel
[[ $DS == 1 ]] && DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps -w .whl deepspeed==0.16.9
du -sh .whl
