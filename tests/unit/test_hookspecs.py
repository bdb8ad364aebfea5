"""hookspecs: every hook is documented in docs/plugins.md with a runnable example, and every hook has a test (in
either tier). Each example from the docs is executed, registered as a plugin, and exercised here (the examples that
need torch or a model: tests/test_hookspecs_docs.py)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from llama_factory_ext import hookspecs, plugins
from llama_factory_ext.api import MemoryTerm, Run, UserError
from llama_factory_ext.recipe import prepare

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "plugins.md").read_text()
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("lfx_"))
HOST_KEYS = {"stage", "finetuning_type", "learning_rate", "model_name_or_path", "output_dir"}


def doc_example(hook: str) -> str:
    m = re.search(rf"^## `{hook}`\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert m, f"docs/plugins.md has no section for {hook}"
    blocks = re.findall(r"```python\n(.*?)```", m.group(1), re.S)
    assert blocks, f"section {hook} has no python example"
    return blocks[-1]


@pytest.fixture()
def plugin_from_doc():
    registered = []

    def load(hook: str):
        plugins.reset()
        mod = types.ModuleType(f"doc_example_{hook}")
        sys.modules[mod.__name__] = mod  # pydantic resolves annotations through the module
        exec(compile(doc_example(hook), f"docs/plugins.md:{hook}", "exec"), mod.__dict__)
        plugins.get_plugin_manager().register(mod, name=mod.__name__)
        registered.append(mod)
        return mod

    yield load
    plugins.reset()


def test_every_hook_is_documented_and_tested():
    assert HOOKS == sorted(
        ["lfx_register_strategies", "lfx_register_stages", "lfx_register_keys", "lfx_before_training",
         "lfx_memory_terms", "lfx_recipe_dirs"]
    )
    tests_text = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))  # both tiers
    for hook in HOOKS:
        assert f"## `{hook}`" in DOC, hook
        assert getattr(hookspecs, hook).__doc__.strip(), hook
        assert re.search(rf"def test_{hook}\w*\(", tests_text), f"no test named test_{hook}*"


def test_every_hook_name_has_the_prefix():
    names = [n for n, v in vars(hookspecs).items() if callable(v) and not n.startswith("_") and n not in ("hookspec", "hookimpl")]
    assert names and all(n.startswith("lfx_") for n in names)


def test_lfx_register_keys_example(plugin_from_doc):
    plugin_from_doc("lfx_register_keys")
    run = prepare({"notify_on_finish": "stdout"}, host_keys=HOST_KEYS)
    assert run.settings["notify"].notify_on_finish == "stdout" and run.host_args == {}
    with pytest.raises(UserError, match="notify_on_finish"):
        prepare({"notify_on_finish": "email"}, host_keys=HOST_KEYS)


def test_lfx_before_training_example(plugin_from_doc):
    plugin_from_doc("lfx_before_training")
    pm = plugins.get_plugin_manager()
    run = Run()
    run.parsed.training_args = types.SimpleNamespace(per_device_train_batch_size=8)
    pm.hook.lfx_before_training(run=run)
    run.parsed.training_args.per_device_train_batch_size = 128
    with pytest.raises(UserError, match="per_device_train_batch_size"):
        pm.hook.lfx_before_training(run=run)


def test_lfx_memory_terms_example(plugin_from_doc):
    plugin_from_doc("lfx_memory_terms")
    pm = plugins.get_plugin_manager()
    terms = [t for r in pm.hook.lfx_memory_terms(spec=types.SimpleNamespace(strategy_names=["frozen_embeddings"])) if r
             for t in r]
    assert [t.name for t in terms if isinstance(t, MemoryTerm)] == ["ema copy of the head"]
    none = [r for r in pm.hook.lfx_memory_terms(spec=types.SimpleNamespace(strategy_names=[])) if r]
    assert all("ema copy of the head" not in [t.name for t in r] for r in none)


def test_lfx_recipe_dirs_example(plugin_from_doc):
    plugin_from_doc("lfx_recipe_dirs")
    dirs = [Path(d) for r in plugins.get_plugin_manager().hook.lfx_recipe_dirs() if r for d in r]
    assert Path("/opt/team-recipes") in dirs


def test_registering_a_taken_name_is_an_error(plugin_from_doc):
    plugin_from_doc("lfx_register_strategies")
    clash = types.ModuleType("clash")
    exec(doc_example("lfx_register_strategies"), clash.__dict__)
    plugins.get_plugin_manager().register(clash, name="clash")
    with pytest.raises(UserError, match="already taken"):
        plugins.strategies()
