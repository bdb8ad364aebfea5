"""Turn a recipe dict into host arguments plus a :class:`Run`: sort keys to their owners, compose strategies,
report every problem at once. The checks around it are in :mod:`.checks`; :func:`llama_factory_ext.recipe.prepare`
runs both."""

from __future__ import annotations

import difflib
from typing import Any, Optional

import pydantic

from .. import plugins
from ..api import HOST_FINETUNING_TYPES, Run, UserError
from ..host.gate import HOST_STAGES


YAML_NO_KEYS = ("eval_strategy", "save_strategy", "logging_strategy")


def parse_finetuning_type(value: Any) -> list[str]:
    """``lora`` | ``rslora+cls_head`` | ``[rslora, cls_head]`` -> list of names."""
    if value is None:
        return []
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(",", "+").split("+")]
    elif isinstance(value, (list, tuple)):
        parts = [str(p).strip() for p in value]
    else:
        raise UserError(f"key `finetuning_type`: expected a name or a list of names, got {value!r}")
    return [p for p in parts if p]


def _did_you_mean(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{match[0]}`?" if match else ""


def _pydantic_problems(model: type, values: dict, owner: str) -> tuple[Any, list[str]]:
    try:
        return model(**values), []
    except pydantic.ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or owner
            problems.append(f"key `{key}` ({owner}): {e['msg']} (got {e.get('input')!r})")
        return None, problems


MAX_UNKNOWN_LISTED = 20


def compose(raw: dict, source: Optional[str] = None, host_keys: Optional[set[str]] = None) -> tuple[Run, list[str]]:
    """Sort keys to their owners, compose strategies, parse owner options: (run, problems).

    With no problems, strategies and the stage have rewritten ``run.host_args``; otherwise it holds the
    host keys as written (for best-effort checks).
    """
    if host_keys is None:
        from ..host.keys import host_arg_names

        host_keys = host_arg_names()

    strategies = plugins.strategies()
    stages = plugins.stages()
    key_groups = plugins.key_groups()
    problems: list[str] = []
    run = Run(source=source, raw_args=dict(raw))
    args = dict(raw)

    # which keys belong to whom
    owned: dict[str, tuple[str, str]] = {}
    for s in strategies.values():
        for k in (s.args_model.model_fields if s.args_model else {}):
            owned[k] = ("strategy", s.name)
    for st in stages.values():
        for k in (st.args_model.model_fields if st.args_model else {}):
            owned[k] = ("stage", st.name)
    for owner, model in key_groups.items():
        for k in model.model_fields:
            owned[k] = ("keys", owner)

    unknown = [k for k in args if k not in host_keys and k not in owned]
    if unknown:
        vocabulary = set(host_keys) | set(owned)
        for k in unknown[:MAX_UNKNOWN_LISTED]:
            problems.append(f"key `{k}`: unknown to LLaMA-Factory and to every installed plugin{_did_you_mean(str(k), vocabulary)}")
        if len(unknown) > MAX_UNKNOWN_LISTED:
            problems.append(f"... and {len(unknown) - MAX_UNKNOWN_LISTED} more unknown keys")

    for k in YAML_NO_KEYS:  # YAML 1.1 reads a bare `no` as false; the host then fails with a traceback
        if args.get(k) is False:
            args[k] = "no"

    # stage
    stage_name = args.get("stage", "sft")
    if not isinstance(stage_name, str):
        problems.append(f"key `stage`: expected one stage name, got {stage_name!r} "
                        f"(host stages: {', '.join(HOST_STAGES)}; plugin stages: {', '.join(stages) or 'none'})")
        stage_name = None  # stage-dependent checks wait until the stage is fixed
    elif stage_name in stages:
        run.stage = stages[stage_name]
    elif stage_name not in HOST_STAGES:
        problems.append(
            f"key `stage`: unknown stage '{stage_name}'{_did_you_mean(str(stage_name), list(stages) + list(HOST_STAGES))} "
            f"(host stages: {', '.join(HOST_STAGES)}; plugin stages: {', '.join(stages) or 'none'})"
        )

    # finetuning_type composition
    try:
        names = parse_finetuning_type(args.get("finetuning_type"))
    except UserError as err:
        problems += err.problems
        names = []
    selected = []
    host_named = []
    for n in names:
        if n in HOST_FINETUNING_TYPES:
            host_named.append(n)
        elif n in strategies:
            selected.append(strategies[n])
        else:
            problems.append(
                f"key `finetuning_type`: unknown strategy '{n}'{_did_you_mean(n, list(strategies) + list(HOST_FINETUNING_TYPES))} "
                f"(available: {', '.join(list(HOST_FINETUNING_TYPES) + list(strategies))})"
            )
    if len(set(names)) != len(names):
        problems.append(f"key `finetuning_type`: a name is repeated in {names}")
    bases = {n: n for n in host_named}
    for s in selected:
        if s.base:
            bases.setdefault(s.base, s.name)
    distinct = sorted(set(bases))
    if len(distinct) > 1:
        who = ", ".join(f"{bases[b]} ({b})" for b in distinct)
        problems.append(f"key `finetuning_type`: {who} need different base methods; pick one of them")
    run.base_type = distinct[0] if distinct else "lora"
    for s in selected:
        if s.compatible_bases is not None and run.base_type not in s.compatible_bases:
            problems.append(
                f"key `finetuning_type`: strategy '{s.name}' works on {', '.join(s.compatible_bases)}, not on '{run.base_type}'"
            )
        if s.stages is not None and stage_name is not None and stage_name not in s.stages:
            problems.append(f"key `finetuning_type`: strategy '{s.name}' needs stage {' or '.join(s.stages)}, got stage '{stage_name}'")

    # options of each owner
    chosen = {s.name for s in selected}
    for k, (kind, owner) in owned.items():
        if k not in args:
            continue
        if kind == "strategy" and owner not in chosen:
            problems.append(f"key `{k}` belongs to strategy '{owner}', which `finetuning_type` does not select (add it: [..., {owner}])")
        if kind == "stage" and owner != stage_name and stage_name is not None:
            problems.append(f"key `{k}` belongs to stage '{owner}', but `stage` is '{stage_name}'")

    def take(model, owner):
        values = {k: args.pop(k) for k in list(args) if model and k in model.model_fields}
        if model is None:
            return None
        opts, errs = _pydantic_problems(model, values, owner)
        problems.extend(errs)
        return opts

    for s in selected:
        run.strategies.append((s, take(s.args_model, f"strategy {s.name}")))
    if run.stage:
        run.stage_opts = take(run.stage.args_model, f"stage {run.stage.name}")
    for owner, model in key_groups.items():
        run.settings[owner] = take(model, owner)
    for k in [k for k in args if k in owned]:
        args.pop(k)  # reported above

    if "finetuning_type" in args:
        args["finetuning_type"] = run.base_type

    # plugin validation runs even after earlier problems (for owners whose keys parsed), so every
    # problem is reported in one round; rewriting happens only on a clean recipe
    if run.stage and (run.stage_opts is not None or run.stage.args_model is None):
        problems += run.stage.validate(run.stage_opts, args, run)
    for s, opts in run.strategies:
        if opts is not None or s.args_model is None:
            problems += s.validate(opts, args, run)
    if problems:
        run.host_args = {k: v for k, v in args.items() if k in host_keys and k not in ("finetuning_type", "stage")}
        return run, problems
    if run.stage:
        run.stage.rewrite_args(run.stage_opts, args, run)
    for s, opts in run.strategies:
        s.rewrite_args(opts, args, run)
    run.host_args = args
    return run, []
