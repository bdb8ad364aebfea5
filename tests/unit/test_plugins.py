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
