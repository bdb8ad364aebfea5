"""The unit tier's fixtures: the source tree, no torch, no transformers, no LLaMA-Factory.

Every test here runs as if on the tested release host whose argument names the pack ships a snapshot of
(``llama_factory_ext/host/snapshots/``): the snapshot is put into a per-test cache folder, so ``estimate``'s formula
path, the plugin clash check and ``prepare`` see the host's real key names without importing the host. The host's
argument *types* need its dataclasses: here they are unknown, so ``prepare`` checks keys, ranges, combinations and
owners' models, not host value types (the wheel tier does). Nothing here imports tests/conftest.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RELEASE_SNAPSHOT = "host_args-0.9.5-5.6.0-efcdc9d7b1ee.json"  # llamafactory 0.9.5 with transformers 5.6.0


@pytest.fixture(autouse=True)
def source_host(monkeypatch, tmp_path_factory):
    """A fresh plugin manager of the built-in plugins, an empty user cache holding the release host's argument
    snapshot, no host types."""
    from llama_factory_ext import plugins
    from llama_factory_ext.host import keys
    from llama_factory_ext.recipe import checks

    cache = tmp_path_factory.mktemp("xdg_cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("LLAMA_FACTORY_EXT_PLUGINS", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    target = keys.cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(keys.SNAPSHOTS / RELEASE_SNAPSHOT, target)
    monkeypatch.setattr(checks, "_host_fields", dict)  # the host's dataclasses are not here: no value types
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])  # the built-in plugins only, wherever it runs
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture(scope="session")
def host_keys() -> set:
    """Every key the release host's train parser accepts (its shipped snapshot)."""
    from llama_factory_ext.host.keys import SNAPSHOTS

    return set(json.loads((SNAPSHOTS / RELEASE_SNAPSHOT).read_text())["defaults"])


@pytest.fixture(scope="session")
def recipes_dir() -> Path:
    return REPO / "recipes"


@pytest.fixture()
def workdir(tmp_path, recipes_dir) -> Path:
    """A copy of recipes/ (with data/) to run in."""
    shutil.copytree(recipes_dir, tmp_path / "recipes")
    return tmp_path / "recipes"
