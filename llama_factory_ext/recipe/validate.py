"""``validate``'s report on a recipe: the checks of :mod:`.recipe` with the host's own parser, plus notes (model
path, remote code, and each selected strategy's :meth:`~llama_factory_ext.api.Strategy.notes`)."""

from __future__ import annotations

from pathlib import Path

from ..api import DISABLE_ENV, UserError, pack_disabled
from ..host.keys import host_arg_names
from .checks import check, model_problems, schedule_notes
from .load import cli_override_keys, read_recipe, resolve_paths, with_overrides
from .uses import pack_parts


def validate_file(path: Path, overrides=()) -> tuple[list[str], list[str]]:
    """(problems, notes) for one recipe file; problems name the key."""
    try:
        raw = with_overrides(read_recipe(path), list(overrides))
    except UserError as err:
        return err.problems, []
    raw = resolve_paths(raw, path, keep=cli_override_keys(list(overrides)))
    problems, notes = validate_dict(raw, str(path))
    if pack_disabled():
        parts = pack_parts(raw, host_arg_names())
        if parts:
            problems.insert(0, f"llama-factory-ext is disabled ({DISABLE_ENV} is set), and this recipe needs it for "
                               f"{', '.join(parts)}; `llamafactory-cli train` would stop. Unset {DISABLE_ENV}")
    return problems, notes


def validate_dict(raw: dict, source: str) -> tuple[list[str], list[str]]:
    """(problems, notes): :func:`check` with the host's parser, plus notes (model path, whether the model loads here,
    an evaluation or save schedule that never fires, remote code, LR table)."""
    run, problems = check(raw, source, host_parse=True)
    notes: list[str] = []
    model = raw.get("model_name_or_path")
    if isinstance(model, str) and model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        notes.append(f"note: model_name_or_path {model} is not a folder here; give yours: model_name_or_path=/path/to/model")
    notes += [f"warning: {p}" for p in model_problems({**raw, **run.host_args}) + schedule_notes(raw, run.host_args)]
    if raw.get("trust_remote_code") is True:
        notes.append("note: `trust_remote_code: true` runs Python code shipped with the model; keep it false for shared recipes")
    if not problems:
        for strategy, _ in run.strategies:
            notes += strategy.notes(run)
    return problems, notes
