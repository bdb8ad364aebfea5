"""``llamafactory-ext validate``'s report on a recipe: the checks of :mod:`.recipe` with the host's own parser,
plus notes (model path, remote code, the layer-wise LR table of a meta-device model)."""

from __future__ import annotations

from pathlib import Path

from .api import DISABLE_ENV, UserError, pack_disabled
from .recipe.checks import check
from .recipe.load import cli_override_keys, read_recipe, resolve_paths, with_overrides


def validate_file(path: Path, overrides=()) -> tuple[list[str], list[str]]:
    """(problems, notes) for one recipe file; problems name the key."""
    try:
        raw = with_overrides(read_recipe(path), list(overrides))
    except UserError as err:
        return err.problems, []
    raw = resolve_paths(raw, path, keep=cli_override_keys(list(overrides)))
    problems, notes = validate_dict(raw, str(path))
    if pack_disabled():
        from .disabled import pack_parts
        from .host import host_arg_names

        parts = pack_parts(raw, host_arg_names())
        if parts:
            problems.insert(0, f"llama-factory-ext is disabled ({DISABLE_ENV} is set), and this recipe needs it for "
                               f"{', '.join(parts)}; `llamafactory-cli train` would stop. Unset {DISABLE_ENV}")
    return problems, notes


def validate_dict(raw: dict, source: str) -> tuple[list[str], list[str]]:
    """(problems, notes): :func:`check` with the host's parser, plus notes (model path, remote code, LR table)."""
    run, problems = check(raw, source, host_parse=True)
    notes: list[str] = []
    model = raw.get("model_name_or_path")
    if isinstance(model, str) and model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        notes.append(f"note: model_name_or_path {model} is not a folder here; give yours: model_name_or_path=/path/to/model")
    if raw.get("trust_remote_code") is True:
        notes.append("note: `trust_remote_code: true` runs Python code shipped with the model; keep it false for shared recipes")
    if not problems:
        notes += _layerwise_notes(run)
    return problems, notes


def _layerwise_notes(run) -> list[str]:
    """The layer-wise LR groups the run would get, computed on a meta-device model (no weights)."""
    if "layerwise_lr" not in run.strategy_names:
        return []
    try:
        from .estimator.build import build_meta_model, load_model_config, parse_host_args
        from .strategies.layerwise_lr.groups import format_table, layerwise_table
    except ImportError:
        return []
    try:
        model_args, data_args, training_args, finetuning_args, _ = parse_host_args(run, run.source)
        config, _ = load_model_config(model_args.model_name_or_path)
        is_cls = run.stage is not None and run.stage.name == "cls"
        if is_cls:
            from .estimator.build import cls_num_labels

            config.num_labels = cls_num_labels(run, data_args, training_args)[0]
        model = build_meta_model(config, model_args, finetuning_args, run, is_cls, [])
        rows = layerwise_table(model, training_args, run.opts("layerwise_lr"))
    except Exception as exc:  # e.g. no config for the model: say why the table is missing
        msg = exc.render() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        return [f"layer-wise LR table: not available ({msg})"]
    return ["layer-wise learning rates (meta-device model, no weights loaded):"] + format_table(rows).splitlines()
