"""The one recipe reader: a YAML or JSON file and ``key=value`` overrides, typed as the host types them
(OmegaConf, as in LLaMA-Factory's ``read_args``), with size, alias and duplicate-key limits; recipe-relative
paths; a dataset folder's ``dataset_info.json``.

A recipe is data: read with a safe loader, never a reason to import or run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from ..api import UserError
from ..safeio import JSON_LIMIT, RECIPE_LIMIT, read_text

# keys whose relative paths resolve against the recipe's folder
PATH_KEYS = ("dataset_dir",)


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"found duplicate key {key}")
        seen[key] = value
    return seen


def read_recipe(path: os.PathLike) -> dict:
    """A recipe file (``.yaml``/``.yml``, or ``.json``) as a dict, read as the host reads it.

    YAML goes through OmegaConf's safe loader, which refuses duplicate keys and alias bombs; the file
    is size-limited (``safeio.RECIPE_LIMIT``). Problems raise :class:`UserError` naming the file.
    """
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    text = read_text(path, RECIPE_LIMIT, "recipe")
    try:
        if path.suffix == ".json":
            data = OmegaConf.to_container(OmegaConf.create(json.loads(text, object_pairs_hook=_no_duplicates)))
        else:
            data = OmegaConf.to_container(OmegaConf.create(text))
    except Exception as exc:  # syntax, duplicate keys, alias limits: say where
        kind = "JSON" if path.suffix == ".json" else "YAML"
        why = str(exc).strip() or "a recipe must be a mapping of key: value at the top level"  # OmegaConf on `5`
        raise UserError(f"cannot read the {kind}: {why}", str(path)) from None
    if not isinstance(data, dict):
        raise UserError("a recipe must be a mapping of key: value at the top level", str(path))
    bad = _not_text(data)
    if bad:  # JSON's "\ud800" escape: a string no file name, log or UTF-8 file can hold
        raise UserError([f"key `{k}`: a lone surrogate character (a broken \\uXXXX escape) is not valid text"
                         for k in bad[:5]], str(path))
    return data


def _not_text(value, where: str = "") -> list[str]:
    """Keys (dotted) whose key or string value holds a lone surrogate character."""
    def bad(s) -> bool:
        try:
            str(s).encode("utf-8")
            return False
        except UnicodeEncodeError:
            return True

    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            name = f"{where}.{k}" if where else str(k)
            out += [name.encode("utf-8", "backslashreplace").decode()] if bad(k) else _not_text(v, name)
        return out
    if isinstance(value, list):
        return [w for v in value for w in _not_text(v, where)][:1]
    return [where] if isinstance(value, str) and bad(value) else []


def parse_overrides(items: Sequence[str]) -> dict:
    """``key=value`` strings (as after ``llamafactory-cli train recipe.yaml``) -> dict, typed as the host types
    them (``OmegaConf.from_cli``: ``5e-5`` is a float, ``[a,b]`` a list, a dotted key a nested mapping)."""
    items = list(items or [])
    if not items:
        return {}
    bad = [o for o in items if "=" not in o]
    if bad:
        raise UserError([f"override `{o}`: expected key=value" for o in bad])
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.from_cli(items))
    except Exception as exc:
        problems = []
        for item in items:  # name the key whose value cannot be read
            try:
                OmegaConf.from_cli([item])
            except Exception as one:  # noqa: BLE001 -- OmegaConf's and YAML's errors alike
                key, _, value = item.partition("=")
                problems.append(f"key `{key.strip()}`: the command-line value {value!r} cannot be read "
                                f"({str(one).strip().splitlines()[0]})")
        raise UserError(problems or f"overrides {' '.join(items)}: {str(exc).strip().splitlines()[0]}") from None


def typed_value(text: str) -> Any:
    """One command-line value typed as an override is (``--key 5e-5`` -> 5e-05); unreadable text stays a string."""
    try:
        return parse_overrides([f"value={text}"])["value"]
    except UserError:
        return text


def with_overrides(raw: dict, overrides: Union[Sequence[str], Mapping, None]) -> dict:
    """``raw`` with overrides (``key=value`` strings or a dict) merged the way the host merges them."""
    if not overrides:
        return raw
    from omegaconf import OmegaConf

    extra = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    try:
        return OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(raw), OmegaConf.create(extra)))
    except Exception as exc:  # e.g. ``a.b=1`` where ``a`` is a number
        raise UserError(f"overrides: {str(exc).strip().splitlines()[0]}") from None


def cli_override_keys(argv: Sequence[str]) -> tuple[str, ...]:
    """Keys set as ``key=value`` after the recipe path on a host command line."""
    return tuple(a.split("=", 1)[0].lstrip("-").strip() for a in argv if "=" in a)


def resolve_paths(raw: dict, recipe_path: Optional[os.PathLike], keep: tuple = ()) -> dict:
    """Make relative ``dataset_dir`` (etc.) absolute against the recipe's folder, when that folder has it; a local
    ``model_name_or_path`` (``./name``) likewise, when the working folder does not have it (the host's reading first).

    ``keep``: keys given on the command line, which stay relative to the working directory.
    """
    if not recipe_path:
        return raw
    base = Path(recipe_path).resolve().parent
    out = dict(raw)
    for key in PATH_KEYS:
        value = out.get(key)
        if key in keep or not isinstance(value, str) or not value or os.path.isabs(value):
            continue
        if value == "ONLINE" or value.startswith("REMOTE:"):
            continue
        candidate = base / value
        if candidate.exists():
            out[key] = str(candidate)
    model = out.get("model_name_or_path")
    if ("model_name_or_path" not in keep and isinstance(model, str) and model.startswith(("./", "../"))
            and not os.path.exists(model) and (base / model).exists()):
        out["model_name_or_path"] = str(base / model)  # e.g. ./tiny_llama next to the recipe; the cwd wins first
    return out


def dataset_info(dataset_dir: os.PathLike) -> dict[str, Any]:
    """The ``dataset_info.json`` of a dataset folder, size-limited."""
    path = Path(dataset_dir) / "dataset_info.json"
    try:
        if not path.is_file():
            raise UserError(f"key `dataset_dir`: no dataset_info.json in {dataset_dir}")
        return json.loads(read_text(path, JSON_LIMIT, "dataset list"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    except (OSError, ValueError) as exc:  # a name too long, a lone surrogate, unreadable
        raise UserError(f"key `dataset_dir`: cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
