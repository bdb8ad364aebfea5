"""What ``llamafactory-cli chat``, ``api`` and ``webchat`` (and Python code importing the eval module) call back:
their argument function reads pack strategies as their host base, and refuses a run of a pack stage; ``api`` given
cls runs serves them (``llama_factory_ext.serving``) instead of the host's chat model."""

from __future__ import annotations

import os
from typing import Any, Optional

from .. import plugins
from ..api import HOST_FINETUNING_TYPES, UserError
from ..recipe.compose import parse_finetuning_type
from ..host.calls import read_args
from ..host.gate import HOST_STAGES, check_infer
from ..recipe.uses import pack_names
from ..runtime import PREFIX, fail, say
from .argv import split_argv
from .wrap import wrap

# module imported by `llamafactory-cli chat/api/webchat` (and the eval module) -> the argument function it calls
INFER_ENTRY = {"llamafactory.chat.chat_model": "get_infer_args", "llamafactory.eval.evaluator": "get_eval_args"}


def patch_infer(module) -> None:
    name = INFER_ENTRY[module.__name__]
    problems = check_infer(module.__name__)
    if problems:  # changed host: leave it as it is
        say(f"{PREFIX} {module.__name__} is left as the host's own: " + "; ".join(problems))
        return

    def make(orig):
        def parse(args=None):
            try:
                new = infer_recipe(read_args(args))
            except UserError as err:
                fail(err)
            return orig(args if new is None else new)

        return parse

    wrap(module, name, make)


def patch_api(module) -> None:
    """``run_api``: a config naming cls runs (or a merged cls export) starts the pack's classification server on the
    host's API_HOST / API_PORT; any other config runs the host's server untouched."""
    problems = check_infer(module.__name__)
    if problems:
        say(f"{PREFIX} {module.__name__} is left as the host's own: " + "; ".join(problems))
        return

    def make(orig):
        def run_api(*args, **kwargs):
            from ..serving.spec import serve_spec

            try:
                raw = read_args(None)
                spec = serve_spec(raw if isinstance(raw, dict) else argv_values(split_argv(raw)))
            except UserError as err:
                fail(err)
            if spec is None:
                return orig(*args, **kwargs)
            from ..serving.app import serve

            try:
                serve(*spec)
            except UserError as err:
                fail(err)

        return run_api

    wrap(module, "run_api", make)


def argv_values(items) -> dict:
    """{key: value} of split argv items (one value as itself, several as a list)."""
    return {k: (v[0] if len(v) == 1 else v) for k, v, _ in items if k}


def stage_run(raw: dict) -> tuple[Optional[Any], Optional[str]]:
    """(stage, folder) when the config's adapter or model path is a finished run of a pack stage."""
    for key in ("adapter_name_or_path", "model_name_or_path"):
        for path in str(raw.get(key) or "").split(","):
            path = path.strip()
            if not path or not os.path.isdir(path):
                continue
            for stage in plugins.stages().values():
                if stage.finished_run(path):
                    return stage, path
    return None, None


def infer_recipe(raw) -> Optional[Any]:
    """A chat / api / eval config that names pack strategies, as the host reads it: finetuning_type -> its host
    base, pack keys dropped. A run of a pack stage is refused with that stage's pointer. None = unchanged."""
    argv = isinstance(raw, list)
    items = split_argv(raw) if argv else None
    values = argv_values(items) if argv else raw
    if not isinstance(values, dict):
        return None
    stage_name = values.get("stage")
    stage, run_dir = stage_run(values)
    if stage is None and stage_name is not None and stage_name not in HOST_STAGES:
        stage = plugins.stages().get(stage_name) if isinstance(stage_name, str) else None
        if stage is None:
            raise UserError(f"key `stage`: `{stage_name}` is neither a host stage nor a stage of an installed plugin; "
                            "chat, api and eval load text generators")
    if stage is not None:
        raise UserError(stage.generation_refusal(run_dir))
    try:
        names = parse_finetuning_type(values.get("finetuning_type"))
    except UserError:
        return None
    pack_keys = pack_names() - {"finetuning_type", "stage"}
    dropped = [k for k in values if k in pack_keys]
    if all(n in HOST_FINETUNING_TYPES for n in names) and not dropped:
        return None
    strategies = plugins.strategies()
    bases = [n for n in names if n in HOST_FINETUNING_TYPES]
    bases += [strategies[n].base for n in names if n in strategies and strategies[n].base]
    base = bases[0] if bases else "lora"
    if not argv:
        out = {k: v for k, v in raw.items() if k not in dropped}
        if "finetuning_type" in out:
            out["finetuning_type"] = base
        return out
    tokens = []
    for k, v, toks in items:
        if k in dropped:
            continue
        tokens += ["--finetuning_type", base] if k == "finetuning_type" else toks
    return tokens
