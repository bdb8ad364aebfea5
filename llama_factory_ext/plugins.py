"""The plugin manager: built-in plugins and entry-point plugins, registered the same way."""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Optional

import pluggy

from . import hookspecs
from .api import HOST_FINETUNING_TYPES, Stage, Strategy, UserError

hookimpl = pluggy.HookimplMarker("llama_factory_ext")
ENTRY_POINT_GROUP = "llama_factory_ext"
DEFAULT_PLUGINS = (
    "llama_factory_ext.strategies.rslora",
    "llama_factory_ext.strategies.cls_head",
    "llama_factory_ext.strategies.layerwise_lr",
    "llama_factory_ext.stages.cls",
    "llama_factory_ext.estimator.plugin",
    "llama_factory_ext.recipes",
)

_pm: Optional[pluggy.PluginManager] = None


class PluginLoadError(UserError):
    pass


def _selected_external() -> Optional[set[str]]:
    raw = os.environ.get("LLAMA_FACTORY_EXT_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def get_plugin_manager() -> pluggy.PluginManager:
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("llama_factory_ext")
        pm.add_hookspecs(hookspecs)
        for mod_name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(mod_name), name=mod_name)
        wanted = _selected_external()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if wanted is not None and ep.name not in wanted:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # one clear message naming the plugin
                dist = getattr(ep, "dist", None)
                owner = f" (package {dist.name} {dist.version})" if dist else ""
                raise PluginLoadError(
                    f"plugin '{ep.name}'{owner} failed to import: {type(exc).__name__}: {exc}. "
                    f"Fix or uninstall it, or limit plugins with LLAMA_FACTORY_EXT_PLUGINS=name1,name2."
                ) from exc
            pm.register(plugin, name=ep.name)
            pm._lfx_dists = getattr(pm, "_lfx_dists", {})
            pm._lfx_dists[ep.name] = getattr(ep, "dist", None)
        _pm = pm
    return _pm


def reset() -> None:
    """Forget the plugin manager (tests)."""
    global _pm
    _pm = None
    _registry_cache.clear()


_registry_cache: dict = {}


def _collect(hook_name: str, kind: type, reserved: tuple = ()) -> dict:
    if hook_name in _registry_cache:
        return _registry_cache[hook_name]
    pm = get_plugin_manager()
    found: dict = {}
    owners: dict = {}

    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        def register(obj, _plugin=impl.plugin_name):
            obj = obj() if isinstance(obj, type) else obj
            if not isinstance(obj, kind) or not obj.name:
                raise PluginLoadError(f"plugin '{_plugin}' registered {obj!r}, not a named {kind.__name__}")
            if obj.name in found or obj.name in reserved:
                prev = owners.get(obj.name, "the host")
                raise PluginLoadError(f"plugin '{_plugin}' registers '{obj.name}', already taken by {prev}")
            found[obj.name] = obj
            owners[obj.name] = _plugin

        impl.function(register)
    _registry_cache[hook_name] = found
    _registry_cache[hook_name + ":owners"] = owners
    return found


def strategies() -> dict[str, Strategy]:
    return _collect("lfx_register_strategies", Strategy, HOST_FINETUNING_TYPES)


def stages() -> dict[str, Stage]:
    return _collect("lfx_register_stages", Stage, ("pt", "sft", "rm", "ppo", "dpo", "kto"))


def owner_of(kind: str, name: str) -> Optional[str]:
    hook = {"strategy": "lfx_register_strategies", "stage": "lfx_register_stages"}[kind]
    (strategies if kind == "strategy" else stages)()
    return _registry_cache[hook + ":owners"].get(name)


def key_groups() -> dict[str, type]:
    """Top-level key groups: owner -> pydantic model."""
    if "keys" in _registry_cache:
        return _registry_cache["keys"]
    groups: dict[str, type] = {}
    get_plugin_manager().hook.lfx_register_keys(register=lambda owner, model: groups.__setitem__(owner, model))
    _registry_cache["keys"] = groups
    return groups


def describe() -> list[dict]:
    """Each plugin with its version, hooks, strategies and stages (for ``llamafactory-ext plugins``)."""
    from . import __version__

    pm = get_plugin_manager()
    strat, stg = strategies(), stages()
    s_owner = _registry_cache["lfx_register_strategies:owners"]
    st_owner = _registry_cache["lfx_register_stages:owners"]
    dists = getattr(pm, "_lfx_dists", {})
    rows = []
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(name)
        rows.append(
            {
                "name": name,
                "builtin": name in DEFAULT_PLUGINS,
                "package": dist.name if dist else "llama-factory-ext",
                "version": dist.version if dist else __version__,
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
                "strategies": sorted(n for n, o in s_owner.items() if o == name and n in strat),
                "stages": sorted(n for n, o in st_owner.items() if o == name and n in stg),
            }
        )
    return rows
