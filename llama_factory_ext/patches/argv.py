"""``llamafactory-cli train --key value ...``: the command line as a recipe, typed the host's way."""

from __future__ import annotations

import sys
from typing import Any, Optional

from ..api import HOST_FINETUNING_TYPES, UserError
from ..host.calls import train_arg_classes
from ..host.gate import HOST_STAGES
from ..host.keys import host_arg_names
from ..recipe.compose import parse_finetuning_type
from ..recipe.load import cli_override_keys, resolve_paths, typed_value
from ..runtime import fail, recipe_source


def recipe_relative_paths(raw, args):
    """A recipe file's relative ``dataset_dir`` resolves against the recipe's folder (not the cwd)."""
    source = recipe_source() if args is None else None
    if not source:
        return raw
    return resolve_paths(raw, source, keep=cli_override_keys(sys.argv[2:]))


def split_argv(argv: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """``--key v``, ``--key=v``, ``--flag``, ``--key a b`` -> [(key, values, tokens)]; a stray positional has key ''."""
    items: list[tuple[str, list[str], list[str]]] = []
    for tok in argv:
        if tok.startswith("--") and len(tok) > 2:
            key, eq, val = tok[2:].partition("=")
            items.append((key, [val] if eq else [], [tok]))
        elif items and items[-1][0]:
            items[-1][1].append(tok)
            items[-1][2].append(tok)
        else:
            items.append(("", [tok], [tok]))
    return items


def _typed(values: list[str]) -> Any:
    """Values as the host types ``key=value`` overrides; a bare flag is True, several values a list."""
    if not values:
        return True
    return typed_value(values[0]) if len(values) == 1 else [typed_value(v) for v in values]


def argv_recipe(argv: list[str]) -> Optional[dict]:
    """``llamafactory-cli train --key value ...`` as a recipe dict when it uses a pack key; else None (host as is).

    Host keys are typed by the host's own argparse converters; pack keys like YAML scalars.
    """
    import argparse

    from transformers import HfArgumentParser

    items = split_argv(argv)
    parser = HfArgumentParser(train_arg_classes())
    known = set(parser._option_string_actions)
    host_names = host_arg_names()
    # kept as strings (the host parser's choices would refuse pack names); several values -> a list
    special = {k: (v[0] if len(v) == 1 else v) for k, v, _ in items if k in ("finetuning_type", "stage")}
    other = [(k, v) for k, v, _ in items if k and k not in special and f"--{k}" not in known]
    uses_pack = (any(k not in host_names for k, _ in other)
                 or any(n not in HOST_FINETUNING_TYPES for n in parse_finetuning_type(special.get("finetuning_type")))
                 or ("stage" in special and special["stage"] not in HOST_STAGES))
    if not uses_pack:
        return None
    host_tokens = [t for k, _, toks in items if not k or (k not in special and f"--{k}" in known) for t in toks]
    for action in parser._actions:
        action.default, action.required = argparse.SUPPRESS, False
    namespace, rest = parser.parse_known_args(host_tokens)
    if rest:
        raise UserError([f"command line: cannot read `{' '.join(rest)}` (expected --key value)"])
    recipe = {**vars(namespace), **special}
    for key, values in other:
        recipe[key] = _typed(values)
    return recipe


def argv_as_recipe(raw):
    if isinstance(raw, list) and "-h" not in raw and "--help" not in raw:
        try:
            return argv_recipe(raw) or raw
        except UserError as err:
            fail(err)
    return raw
