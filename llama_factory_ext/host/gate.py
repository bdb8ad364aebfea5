"""The capability gate: which host functions the pack wraps or calls, and whether the installed host has them.

A host upgrade starts here: check the inventories against the new host, widen ``TESTED_VERSIONS``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Optional

MIN_VERSION = (0, 9, 5)
TESTED_VERSIONS = ("0.9.5", "0.9.6.dev0")  # the PyPI release and the development head (source installs)
SUPPORTED_TEXT = f">={'.'.join(map(str, MIN_VERSION))} (tested: {', '.join(TESTED_VERSIONS)})"
HOST_STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")
# host switches that route training to another backend (env vars and recipe keys); pack hooks do not run there
BACKEND_ENV = ("USE_MCA", "USE_MEGATRON_BRIDGE")
BACKEND_KEYS = ("use_mca", "use_megatron_bridge", "use_hyper_parallel", "use_kt")
TRAINER_MODULES = ("pt", "sft", "rm", "ppo", "dpo", "kto")

# module -> {function name: expected leading parameter names}
WRAPPED: dict[str, dict[str, tuple[str, ...]]] = {
    "llamafactory.train.tuner": {
        "run_exp": ("args", "callbacks"),
        "_training_function": ("config",),
        "get_train_args": ("args",),
        "export_model": ("args",),
        "read_args": ("args",),
    },
    "llamafactory.model.loader": {"init_adapter": ("config", "model", "model_args", "finetuning_args", "is_trainable")},
    "llamafactory.model.adapter": {"init_adapter": ("config", "model", "model_args", "finetuning_args", "is_trainable")},
    "llamafactory.train.trainer_utils": {"create_custom_optimizer": ("model", "training_args", "finetuning_args")},
    **{
        f"llamafactory.train.{m}.trainer": {"create_custom_optimizer": ("model", "training_args", "finetuning_args")}
        for m in TRAINER_MODULES
    },
}

# other host names the pack calls (must exist; signatures are checked through the tests)
USED: dict[str, tuple[str, ...]] = {
    "llamafactory.hparams.parser": ("_TRAIN_ARGS", "_parse_train_args"),
    "llamafactory.hparams.training_args": ("RayArguments",),
    "llamafactory.train.callbacks": ("LogCallback", "ReporterCallback"),
    "llamafactory.model": ("load_tokenizer",),
    "llamafactory.model.loader": ("load_config",),
    "llamafactory.model.patcher": ("patch_config",),
    "llamafactory.model.model_utils.misc": ("find_all_linear_modules",),
    "llamafactory.model.model_utils.checkpointing": ("prepare_model_for_training",),
    "llamafactory.data": ("get_dataset", "get_template_and_fix_tokenizer"),
    "llamafactory.data.parser": ("get_dataset_list",),
    "llamafactory.extras.constants": ("LAYERNORM_NAMES",),
    "llamafactory.extras.ploting": ("plot_loss",),
}

# the chat / api / webchat / eval entry modules: module -> {argument function: leading parameters}
INFER_WRAPPED: dict[str, dict[str, tuple[str, ...]]] = {
    "llamafactory.chat.chat_model": {"get_infer_args": ("args",)},
    "llamafactory.eval.evaluator": {"get_eval_args": ("args",)},
    "llamafactory.api.app": {"run_api": ()},
}
INFER_USED: dict[str, tuple[str, ...]] = {"llamafactory.hparams.parser": ("read_args",)}

WEBUI_WRAPPED: dict[str, dict[str, tuple[str, ...]]] = {
    "llamafactory.webui.interface": {"create_train_tab": ("engine",), "create_footer": (), "create_ui": ("demo_mode",)},
    "llamafactory.webui.runner": {
        "Runner._parse_train_args": ("self", "data"),
        "Runner._parse_eval_args": ("self", "data"),
        "Runner.preview_train": ("self", "data"),
        "Runner.monitor": ("self",),
        "Runner._build_config_dict": ("self", "data"),
    },
    "llamafactory.webui.chatter": {"WebChatModel.load_model": ("self", "data")},
    "llamafactory.webui.manager": {
        "Manager.get_base_elems": ("self",),
        "Manager.add_elems": ("self", "tab_name", "elem_dict"),
        "Manager.get_elem_by_id": ("self", "elem_id"),
        "Manager.get_elem_list": ("self",),
        "Manager.get_id_by_elem": ("self", "elem"),
    },
    "llamafactory.webui.common": {"get_save_dir": ("paths",), "_clean_cmd": ("args",)},
}
WEBUI_CONSTANTS = {"TRAINING_STAGES": dict, "METHODS": list, "PEFT_METHODS": set}

# settings that change the estimate (the ones present are watched)
WEBUI_ESTIMATE_TRIGGERS = (
    "top.model_name", "top.model_path", "top.finetuning_type", "top.quantization_bit", "top.quantization_method",
    "top.booster", "train.training_stage", "train.dataset", "train.dataset_dir", "train.batch_size",
    "train.cutoff_len", "train.gradient_accumulation_steps", "train.compute_type", "train.ds_stage",
    "train.ds_offload", "train.lora_rank", "train.lora_target", "train.additional_target", "train.extra_args",
    "train.use_galore", "train.use_apollo", "train.use_badam",
)
_webui: dict[str, Any] = {"active": False, "problems": [], "warned": False, "engine": None, "fields": [], "elems": {}}


# what the patches found: the train stack ("train") and the web UI ("webui")
state: dict[str, Any] = {"active": False, "problems": []}
webui_state: dict[str, Any] = {"active": False, "problems": [], "warned": False, "engine": None, "fields": [], "elems": {}}


def host_version() -> Optional[str]:
    try:
        from llamafactory.extras.env import VERSION

        return VERSION
    except Exception:
        try:
            from importlib.metadata import version

            return version("llamafactory")
        except Exception:
            return None


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _resolve(mod, dotted: str):
    obj = mod
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
    return obj


def check_inventory(wrapped: dict, used: Optional[dict] = None) -> list[str]:
    """Problems with one inventory: every wrapped function with its leading parameters, every other name used."""
    problems = []
    used = used or {}
    for mod_name in dict.fromkeys([*wrapped, *used]):
        try:
            mod = importlib.import_module(mod_name)
        except Exception as exc:
            problems.append(f"{mod_name} cannot be imported ({type(exc).__name__}: {exc})")
            continue
        for dotted, params in wrapped.get(mod_name, {}).items():
            obj = _resolve(mod, dotted)
            if obj is None:
                problems.append(f"{mod_name}.{dotted} is missing")
                continue
            problem = signature_problem(f"{mod_name}.{dotted}", obj, params)
            if problem:
                problems.append(problem)
        problems += [f"{mod_name}.{a} is missing" for a in used.get(mod_name, ()) if not hasattr(mod, a)]
    return problems


def check_host(version: Optional[str] = None) -> list[str]:
    """Problems that make the installed host unsafe to patch (empty list = OK).

    Capabilities, not version numbers: every wrapped function with its leading parameters, every other
    name the pack calls. An untested version that passes is a warning (:func:`host_warnings`)."""
    version = version if version is not None else host_version()
    if version is None:
        return ["LLaMA-Factory (`llamafactory`) is not installed"]
    problems = []
    if _version_tuple(version) < MIN_VERSION:
        problems.append(f"installed llamafactory {version} is older than {'.'.join(map(str, MIN_VERSION))}")
    return problems + check_inventory(WRAPPED, USED)


def check_infer(module_name: str) -> list[str]:
    """Problems with one chat / eval entry module's argument function."""
    return check_inventory({module_name: INFER_WRAPPED[module_name]}, INFER_USED)


def check_webui() -> list[str]:
    """Problems with the web UI internals the pack touches (empty list = OK)."""
    problems = check_inventory(WEBUI_WRAPPED)
    try:
        constants = importlib.import_module("llamafactory.extras.constants")
        for name, kind in WEBUI_CONSTANTS.items():
            if not isinstance(getattr(constants, name, None), kind):
                problems.append(f"llamafactory.extras.constants.{name} is not a {kind.__name__}")
    except Exception as exc:
        problems.append(f"llamafactory.extras.constants cannot be imported ({exc})")
    try:
        import gradio as gr

        for name in ("on", "Accordion", "Markdown", "Textbox", "Dropdown", "Checkbox", "Error"):
            if not hasattr(gr, name):
                problems.append(f"gradio.{name} is missing")
    except Exception as exc:
        problems.append(f"gradio cannot be imported ({exc})")
    return problems


def signature_problem(label: str, obj, params: tuple[str, ...]) -> Optional[str]:
    """'LABEL changed: ...' when the host function behind ``obj`` does not start with ``params``, else None."""
    try:
        names = tuple(inspect.signature(unwrapped(obj)).parameters)[: len(params)]
    except (TypeError, ValueError):
        names = ()
    return None if names == params else f"{label} changed: parameters {names}, expected {params}"


def unwrapped(obj):
    """The host's own function behind the pack's wrapper (never inspect the pack's code as the host's)."""
    seen = 0
    while seen < 10 and (hasattr(obj, "_lfx_original") or hasattr(obj, "__wrapped__")):
        obj = getattr(obj, "_lfx_original", None) or getattr(obj, "__wrapped__")
        seen += 1
    return obj


def tested_host(version: Optional[str] = None) -> Optional[str]:
    """Which tested host this is: 'release' (0.9.5), 'head' (0.9.6.dev0) or None (untested)."""
    version = version if version is not None else host_version()
    return {"0.9.5": "release", "0.9.6.dev0": "head"}.get(version or "")


def host_warnings(version: Optional[str] = None) -> list[str]:
    version = version if version is not None else host_version()
    if version is None or tested_host(version):
        return []
    return [f"LLaMA-Factory {version} is not a tested host (tested: {', '.join(TESTED_VERSIONS)}); "
            "every function the pack wraps matches, so the pack runs"]


def gate_message(problems: list[str], needs: Optional[list[str]] = None) -> str:
    head = (f"llama-factory-ext {_pack_version()} cannot run with this LLaMA-Factory "
            f"(installed: {host_version()}, supported: {SUPPORTED_TEXT})")
    if needs:
        head = f"{', '.join(needs)} need{'s' if len(needs) == 1 else ''} the pack, but " + head
    return (
        head + ":\n"
        + "\n".join(f"  - {p}" for p in problems)
        + "\nInstall a tested host (pip install 'llamafactory==0.9.5', or the head from source), upgrade "
        "llama-factory-ext, or remove the pack's keys to train with the host alone."
    )


def _pack_version() -> str:
    from .. import __version__

    return __version__
