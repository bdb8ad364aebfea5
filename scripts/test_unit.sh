#!/usr/bin/env bash
# The unit tier from the source tree: no torch, no host, no wheel. A small venv (.venv-unit) the first time (~30 s).
#   bash scripts/test_unit.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV_UNIT:-.venv-unit}
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c "import hypothesis" 2>/dev/null; then
  [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q pytest "pluggy>=1.5" "pydantic>=2.7" "pyyaml>=6" omegaconf regex hypothesis
fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/unit "$@"
