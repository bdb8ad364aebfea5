"""Recipe headers carry the estimator's current prediction: regenerate them and compare (no GPU)."""

import subprocess
import sys

from conftest import REPO, env


def test_recipe_headers_are_current():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "update_recipe_headers.py"), "--check"],
                       cwd=str(REPO), env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "stale recipe headers (run python scripts/update_recipe_headers.py):\n" + r.stdout[-4000:] + r.stderr[-2000:]


def test_list_shows_the_predicted_memory(tmp_path):
    from conftest import run_cli

    from llama_factory_ext.catalog import read_header

    r = run_cli(["llamafactory-ext", "recipes", "list"], tmp_path)
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("llama3_cls "))
    predicted = read_header(REPO / "recipes" / "llama3_cls.yaml")["memory"].split(" per GPU")[0]
    assert predicted.endswith("GiB") and predicted in row
