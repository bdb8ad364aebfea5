"""The plugin manager: built-in plugins and entry-point plugins, registered the same way."""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points
from typing import Optional

import pluggy

from . import hookspecs
from .api import HOST_FINETUNING_TYPES, Stage, Strategy, UserError

hookimpl = pluggy.HookimplMarker("llama_factory_ext")
ENTRY_POINT_GROUP = "llama_factory_ext"
HOST_STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")
DEFAULT_PLUGINS = (
    "llama_factory_ext.strategies.rslora",
    "llama_factory_ext.strategies.cls_head",
    "llama_factory_ext.strategies.layerwise_lr",
    "llama_factory_ext.stages.cls",
    "llama_factory_ext.estimator.plugin",
    "llama_factory_ext.recipes",
    "llama_factory_ext.guard",
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
    """Built-in plugins, then entry-point plugins; a plugin that fails to import or clashes (takes a host
    key, a name or another owner's key) is left out with one warning line, and everything else goes on."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("llama_factory_ext")
        pm.add_hookspecs(hookspecs)
        for mod_name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(mod_name), name=mod_name)
        pm._lfx_dists = {}
        pm._lfx_left_out = []
        wanted = _selected_external()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if wanted is not None and ep.name not in wanted:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            dist = getattr(ep, "dist", None)
            try:
                plugin = ep.load()
            except Exception as exc:
                _leave_out(pm, ep.name, dist, f"failed to import ({type(exc).__name__}: {exc})")
                continue
            try:
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # e.g. a hook that is not in the specs
                _leave_out(pm, ep.name, dist, f"cannot be registered ({type(exc).__name__}: {exc})")
                continue
            reason = clash_of(pm, ep.name)
            if reason:
                pm.unregister(name=ep.name)
                _leave_out(pm, ep.name, dist, reason)
                continue
            pm._lfx_dists[ep.name] = dist
        _pm = pm
    return _pm


def _leave_out(pm, name: str, dist, reason: str) -> None:
    owner = f" (package {dist.name} {dist.version})" if dist else ""
    line = f"plugin '{name}'{owner} left out: {reason}"
    pm._lfx_left_out.append({"name": name, "package": dist.name if dist else None, "reason": reason})
    print(f"llama-factory-ext: warning: {line}. Runs that do not use it go on; fix or uninstall it, "
          f"or choose plugins with LLAMA_FACTORY_EXT_PLUGINS=name1,name2", file=sys.stderr)


def left_out() -> list[dict]:
    """Plugins that were found but left out (name, package, reason)."""
    return list(getattr(get_plugin_manager(), "_lfx_left_out", []))


def _contributions(pm, plugin_name: str) -> tuple[dict, dict, dict]:
    """(strategies, stages, keys) one plugin registers; keys map key -> what owns it."""
    found: dict = {"lfx_register_strategies": {}, "lfx_register_stages": {}}
    keys: dict[str, str] = {}
    for hook_name, kind in (("lfx_register_strategies", Strategy), ("lfx_register_stages", Stage)):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name != plugin_name:
                continue

            def register(obj, _kind=kind, _into=found[hook_name]):
                obj = obj() if isinstance(obj, type) else obj
                if not isinstance(obj, _kind) or not obj.name:
                    raise PluginLoadError(f"registered {obj!r}, not a named {_kind.__name__}")
                _into[obj.name] = obj

            impl.function(register)
    for impl in pm.hook.lfx_register_keys.get_hookimpls():
        if impl.plugin_name != plugin_name:
            continue
        groups: dict = {}
        impl.function(lambda owner, model: groups.__setitem__(owner, model))
        for owner, model in groups.items():
            for k in getattr(model, "model_fields", {}):
                keys[k] = f"key group '{owner}'"
    for kind, hook_name in (("strategy", "lfx_register_strategies"), ("stage", "lfx_register_stages")):
        for name, obj in found[hook_name].items():
            for k in (obj.args_model.model_fields if obj.args_model else {}):
                keys.setdefault(k, f"{kind} '{name}'")
    return found["lfx_register_strategies"], found["lfx_register_stages"], keys


def clash_of(pm, plugin_name: str) -> Optional[str]:
    """Why a plugin cannot be used beside the others and the host (a name or key already taken), or None."""
    try:
        strat, stg, keys = _contributions(pm, plugin_name)
    except Exception as exc:
        return f"its registration hooks fail ({type(exc).__name__}: {exc})"
    for name in strat:
        if name in HOST_FINETUNING_TYPES:
            return f"it registers strategy '{name}', a LLaMA-Factory finetuning_type"
    for name in stg:
        if name in HOST_STAGES:
            return f"it registers stage '{name}', a LLaMA-Factory stage"
    for other, _ in pm.list_name_plugin():
        if other == plugin_name:
            continue
        try:
            o_strat, o_stg, o_keys = _contributions(pm, other)
        except Exception:
            continue
        for name in strat:
            if name in o_strat:
                return f"it registers strategy '{name}', already taken by plugin '{other}'"
        for name in stg:
            if name in o_stg:
                return f"it registers stage '{name}', already taken by plugin '{other}'"
        for k, what in keys.items():
            if k in o_keys:
                return f"its {what} claims key `{k}`, which belongs to {o_keys[k]} of plugin '{other}'"
    if keys:
        host_keys = _host_key_names()
        taken = sorted(k for k in keys if k in host_keys)
        if taken:
            return (f"its {keys[taken[0]]} claims LLaMA-Factory key{'s' if len(taken) > 1 else ''} "
                    f"{', '.join(f'`{k}`' for k in taken)}; a plugin may only add new keys")
    return None


def _host_key_names() -> set:
    """The host's argument names: from the estimator's cache when it has them (no host import), else the host."""
    try:
        from .estimator.fast import cached_host_args

        cached = cached_host_args()
        if cached is not None:
            return set(cached)
    except Exception:
        pass
    try:
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):  # the host logs to stdout as it loads; keep stdout clean
            from .host import host_arg_names

            return host_arg_names()
    except Exception:  # no usable host: the version gate says so
        return set()


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
    return _collect("lfx_register_stages", Stage, HOST_STAGES)


def key_groups() -> dict[str, type]:
    """Top-level key groups: owner -> pydantic model."""
    if "keys" in _registry_cache:
        return _registry_cache["keys"]
    groups: dict[str, type] = {}
    who: dict[str, str] = {}
    for impl in get_plugin_manager().hook.lfx_register_keys.get_hookimpls():
        def register(owner, model, _plugin=impl.plugin_name):
            for k in getattr(model, "model_fields", {}):
                prev = next((o for o, m in groups.items() if k in m.model_fields), None)
                if prev is not None:
                    raise PluginLoadError(f"plugin '{_plugin}' key group '{owner}' claims key `{k}`, "
                                          f"already owned by key group '{prev}' of plugin '{who[prev]}'")
            groups[owner] = model
            who[owner] = _plugin

        impl.function(register)
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
