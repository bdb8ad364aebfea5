"""Does a recipe need the pack? Keys the host does not know, pack strategies, a pack stage."""

from __future__ import annotations

from typing import Optional

from .. import plugins
from ..api import HOST_FINETUNING_TYPES, UserError
from ..recipe.compose import parse_finetuning_type
from ..host.gate import HOST_STAGES
from ..host.keys import host_arg_names


def pack_uses(raw: dict, host_keys: Optional[set] = None, known_only: bool = False) -> list[str]:
    """What in a recipe needs the pack: keys the host does not know, pack strategies, a pack stage.

    ``known_only``: name only what an installed plugin registers (keys nobody knows are left to the host)."""
    known = pack_names() if known_only else None
    if host_keys is None:
        try:
            host_keys = host_arg_names()
        except Exception:
            host_keys = set()
    needs = [f"key `{k}`" for k in raw if k not in host_keys and (known is None or k in known)]
    try:
        names = parse_finetuning_type(raw.get("finetuning_type"))
    except UserError:
        names = [str(raw.get("finetuning_type"))]
    needs += [f"finetuning_type `{n}`" for n in names
              if n not in HOST_FINETUNING_TYPES and (known is None or n in known)]
    stage = raw.get("stage")
    if stage is not None and (not isinstance(stage, str) or stage not in HOST_STAGES):
        if known is None or (isinstance(stage, str) and stage in known):
            needs.append(f"stage `{stage}`")
    return needs


def pack_names() -> set:
    """Every key, strategy and stage name the installed plugins register (empty if they cannot load)."""
    try:
        names = set(plugins.strategies()) | set(plugins.stages())
        for obj in [*plugins.strategies().values(), *plugins.stages().values()]:
            names |= set(obj.args_model.model_fields) if obj.args_model else set()
        for model in plugins.key_groups().values():
            names |= set(model.model_fields)
        return names
    except Exception:
        return set()


def pack_parts(raw: dict, host_keys: set) -> list[str]:
    """What in ``raw`` only an installed plugin understands (keys, ``finetuning_type`` / ``stage`` values); empty when
    the plugins cannot load (the host then reports the recipe as it does)."""
    try:
        return pack_uses(raw, host_keys, known_only=True)
    except Exception:
        return []
