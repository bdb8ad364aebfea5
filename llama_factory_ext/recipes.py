"""Recipe registry: the bundled recipes and those of installed plugin packs (hook ``lfx_recipe_dirs``).

A recipe is data: a YAML file read with a safe loader, never a reason to import or run code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .api import UserError
from .plugins import hookimpl

# header lines written by scripts/update_recipe_headers.py
HEADER_RUN = "# Run: "
HEADER_HARDWARE = "# Hardware: "
HEADER_MEMORY = "# Predicted peak memory: "
# keys whose relative paths resolve against the recipe's folder
PATH_KEYS = ("dataset_dir",)


def builtin_dir() -> Path:
    """Bundled recipes: ``llama_factory_ext/_recipes`` in the wheel, ``recipes/`` in a source tree."""
    here = Path(__file__).resolve().parent
    shipped = here / "_recipes"
    return shipped if shipped.is_dir() else here.parent / "recipes"


@hookimpl
def lfx_recipe_dirs():
    return [builtin_dir()]


@dataclass
class RecipeInfo:
    name: str
    path: Path
    pack: str
    purpose: str = ""
    run: str = ""
    hardware: str = ""
    memory: str = ""
    args: dict = field(default_factory=dict)
    error: str = ""

    @property
    def task(self) -> str:
        return str(self.args.get("stage", "sft"))

    @property
    def model(self) -> str:
        return str(self.args.get("model_name_or_path", ""))

    @property
    def method(self) -> str:
        ft = self.args.get("finetuning_type", "lora")
        text = "+".join(map(str, ft)) if isinstance(ft, (list, tuple)) else str(ft)
        if self.args.get("quantization_bit"):
            text += f" ({self.args['quantization_bit']}-bit)"
        return text

    @property
    def memory_short(self) -> str:
        m = re.match(r"\s*([0-9.]+\s*[GMK]i?B)", self.memory)
        return m.group(1) if m else (self.memory.split("(")[0].strip() or "-")


def load_yaml(path: os.PathLike) -> dict:
    """A recipe file as a dict, read as the host reads it (OmegaConf's safe YAML loader)."""
    from omegaconf import OmegaConf

    from .safeio import RECIPE_LIMIT, read_text

    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    text = read_text(path, RECIPE_LIMIT, "recipe")
    try:
        data = OmegaConf.to_container(OmegaConf.create(text))
    except Exception as exc:  # YAML syntax: say where
        raise UserError(f"cannot read the YAML: {str(exc).strip()}", str(path)) from None
    if not isinstance(data, dict):
        raise UserError("a recipe must be a mapping of key: value at the top level", str(path))
    return data


def read_header(path: os.PathLike) -> dict:
    """The leading comment block: purpose, run command, hardware, predicted memory."""
    out = {"purpose": "", "run": "", "hardware": "", "memory": "", "lines": []}
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        out["lines"].append(line)
        for key, prefix in (("run", HEADER_RUN), ("hardware", HEADER_HARDWARE), ("memory", HEADER_MEMORY)):
            if line.startswith(prefix):
                out[key] = line[len(prefix):].strip()
                break
        else:
            if not out["purpose"] and ":" in line:
                out["purpose"] = line.split(":", 1)[1].strip()
    return out


def _pack_of(plugin_name: str) -> str:
    if plugin_name.startswith("llama_factory_ext."):
        return "llama-factory-ext"
    from .plugins import get_plugin_manager

    dist = getattr(get_plugin_manager(), "_lfx_dists", {}).get(plugin_name)
    return dist.name if dist else plugin_name


def recipe_dirs() -> list[tuple[str, Path]]:
    """(pack, folder) for every folder contributed through ``lfx_recipe_dirs``, built-in first."""
    from .plugins import get_plugin_manager

    out: list[tuple[str, Path]] = []
    impls = get_plugin_manager().hook.lfx_recipe_dirs.get_hookimpls()
    impls = sorted(impls, key=lambda i: not i.plugin_name.startswith("llama_factory_ext."))
    for impl in impls:
        for d in impl.function() or []:
            d = Path(d)
            if d.is_dir() and all(d != seen for _, seen in out):
                out.append((_pack_of(impl.plugin_name), d))
    return out


def all_recipes() -> dict[str, RecipeInfo]:
    """name -> RecipeInfo; a name a later pack repeats is listed as ``pack:name``."""
    found: dict[str, RecipeInfo] = {}
    for pack, folder in recipe_dirs():
        for path in sorted(folder.glob("*.y*ml")):
            header = read_header(path)
            info = RecipeInfo(path.stem, path, pack, header["purpose"], header["run"], header["hardware"], header["memory"])
            try:
                info.args = load_yaml(path)
            except UserError as err:
                info.error = "; ".join(err.problems)
            name = info.name if info.name not in found else f"{pack}:{info.name}"
            info.name = name
            found[name] = info
    return found


def find(name_or_path: str) -> Path:
    """A recipe file from a registered name or a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    recipes = all_recipes()
    if name_or_path in recipes:
        return recipes[name_or_path].path
    import difflib

    close = difflib.get_close_matches(name_or_path, list(recipes), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else f" (have: {', '.join(sorted(recipes))})"
    raise UserError(f"no recipe named '{name_or_path}' and no such file{hint}")


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


def cli_override_keys(argv: list[str]) -> tuple[str, ...]:
    """Keys set as ``key=value`` after the recipe path on a host command line."""
    return tuple(a.split("=", 1)[0].lstrip("-").strip() for a in argv if "=" in a)


def with_overrides(raw: dict, overrides: list[str]) -> dict:
    """Merge host-style ``key=value`` overrides the way the host does (OmegaConf.from_cli)."""
    if not overrides:
        return raw
    from omegaconf import OmegaConf

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError([f"override `{o}`: expected key=value" for o in bad])
    merged = OmegaConf.merge(OmegaConf.create(raw), OmegaConf.from_cli(list(overrides)))
    return OmegaConf.to_container(merged)


def dataset_info(dataset_dir: os.PathLike) -> dict[str, Any]:
    import json

    from .safeio import JSON_LIMIT, read_text

    path = Path(dataset_dir) / "dataset_info.json"
    if not path.is_file():
        raise UserError(f"key `dataset_dir`: no dataset_info.json in {dataset_dir}")
    try:
        return json.loads(read_text(path, JSON_LIMIT, "dataset list"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
