"""plugins: clashes with the host's keys and other owners' keys, plugins left out, taken names."""

from __future__ import annotations




def _plugin_module(name: str, keys: dict):
    import types

    from pydantic import create_model

    from llama_factory_ext.plugins import hookimpl

    mod = types.ModuleType(name)
    model = create_model(f"{name}_keys", **{k: (float, 0.0) for k in keys})

    @hookimpl
    def lfx_register_keys(register):
        register(name, model)

    mod.lfx_register_keys = lfx_register_keys
    return mod


def test_a_plugin_cannot_take_host_keys_or_another_owners_keys():
    from llama_factory_ext import plugins

    plugins.reset()
    try:
        pm = plugins.get_plugin_manager()
        pm.register(_plugin_module("takes_host", {"learning_rate": 1, "lora_rank": 1}), name="takes_host")
        reason = plugins.clash_of(pm, "takes_host")
        assert "`learning_rate`" in reason and "`lora_rank`" in reason and "LLaMA-Factory" in reason
        pm.unregister(name="takes_host")
        pm.register(_plugin_module("takes_decay", {"layerwise_lr_decay": 1}), name="takes_decay")
        reason = plugins.clash_of(pm, "takes_decay")
        assert "`layerwise_lr_decay`" in reason and "strategy 'layerwise_lr'" in reason
        pm.unregister(name="takes_decay")
        pm.register(_plugin_module("fine", {"my_new_key": 1}), name="fine")
        assert plugins.clash_of(pm, "fine") is None
    finally:
        plugins.reset()


# ----------------------------------------------------------------- entry-point plugins left out, the rest goes on

class _EntryPoint:
    """An installed plugin's entry point: ``load()`` gives the module (or raises), ``dist`` its package."""

    def __init__(self, name, module=None, error=None):
        import types

        self.name, self._module, self._error = name, module, error
        self.dist = types.SimpleNamespace(name=f"lfx-{name}", version="0.0.1")

    def load(self):
        if self._error is not None:
            raise self._error
        return self._module


def _strategy_module(name, strategy_name, base="lora"):
    import types

    from llama_factory_ext.api import Strategy
    from llama_factory_ext.plugins import hookimpl

    mod = types.ModuleType(name)
    cls = type(f"{name}_strategy", (Strategy,), {"name": strategy_name, "base": base})

    @hookimpl
    def lfx_register_strategies(register):
        register(cls())

    mod.lfx_register_strategies = lfx_register_strategies
    return mod


def _installed(monkeypatch, *eps):
    from llama_factory_ext import plugins

    monkeypatch.setattr(plugins, "entry_points", lambda group: list(eps) if group == plugins.ENTRY_POINT_GROUP else [])


def test_broken_and_clashing_plugins_are_left_out_with_one_line_each(monkeypatch, capsys):
    from llama_factory_ext import plugins

    _installed(monkeypatch,
               _EntryPoint("broken", error=ImportError("needs a library that is not installed")),
               _EntryPoint("clash", _strategy_module("clash", "rslora")),
               _EntryPoint("hostname", _strategy_module("hostname", "lora")),
               _EntryPoint("fine", _strategy_module("fine", "train_bias")))
    assert "train_bias" in plugins.strategies() and plugins.strategies()["rslora"].__module__.startswith(
        "llama_factory_ext.strategies")
    rows = {r["name"]: r for r in plugins.left_out()}
    assert sorted(rows) == ["broken", "clash", "hostname"]
    assert rows["broken"]["package"] == "lfx-broken"
    assert rows["broken"]["reason"] == "failed to import (ImportError: needs a library that is not installed)"
    assert rows["clash"]["reason"] == ("it registers strategy 'rslora', already taken by plugin "
                                       "'llama_factory_ext.strategies.rslora'")
    assert rows["hostname"]["reason"] == "it registers strategy 'lora', a LLaMA-Factory finetuning_type"
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "left out" in ln]
    assert len(lines) == 3 and "plugin 'broken' (package lfx-broken 0.0.1) left out" in lines[0]
    assert all("LLAMA_FACTORY_EXT_PLUGINS=name1,name2" in ln for ln in lines)


def test_plugins_env_chooses_which_installed_plugins_load(monkeypatch):
    from llama_factory_ext import plugins

    _installed(monkeypatch, _EntryPoint("one", _strategy_module("one", "train_one")),
               _EntryPoint("two", _strategy_module("two", "train_two")))
    monkeypatch.setenv("LLAMA_FACTORY_EXT_PLUGINS", " two ,")
    assert "train_two" in plugins.strategies() and "train_one" not in plugins.strategies()
    plugins.reset()
    monkeypatch.setenv("LLAMA_FACTORY_EXT_PLUGINS", "")
    assert not {"train_one", "train_two"} & set(plugins.strategies())  # built-ins only
    assert "rslora" in plugins.strategies()
