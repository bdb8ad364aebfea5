"""The host functions the pack calls (tokenizer, config, adapters, datasets, callbacks), each behind one name."""

from __future__ import annotations

try:  # the host fixes transformers' package probe on import; trl reads it once, so load it before anything imports trl
    import llamafactory.extras.packages  # noqa: F401
except Exception:  # missing or broken host: the gate reports it
    pass

def load_tokenizer(model_args):
    from llamafactory.model import load_tokenizer as _load

    return _load(model_args)


def load_config(model_args):
    from llamafactory.model.loader import load_config as _load

    return _load(model_args)


def read_args(args=None):
    """The host's reading of a train / chat config: a dict, a YAML/JSON path in argv, or argv itself (a list)."""
    from llamafactory.hparams.parser import read_args as _read

    return _read(args)


def init_adapter(config, model, model_args, finetuning_args, is_trainable: bool):
    """The host's adapter setup (full / freeze / lora) as patched: the strategies' model hooks run after it."""
    from llamafactory.model import loader

    return loader.init_adapter(config, model, model_args, finetuning_args, is_trainable)


def find_all_linear_modules(model, freeze_vision_tower: bool = True) -> list[str]:
    from llamafactory.model.model_utils.misc import find_all_linear_modules as _find

    return _find(model, freeze_vision_tower)


def get_dataset_module(*args, **kwargs):
    from llamafactory.data import get_dataset

    return get_dataset(*args, **kwargs)


def patch_config(config, tokenizer, model_args, init_kwargs: dict, is_trainable: bool) -> None:
    """The host's config patching: compute dtype, attention, rope, quantization kwargs (into ``init_kwargs``)."""
    from llamafactory.model.patcher import patch_config as _patch

    _patch(config, tokenizer, model_args, init_kwargs, is_trainable)


def prepare_model_for_training(model, model_args) -> None:
    """The host's training preparation: layernorm upcast, gradient checkpointing."""
    from llamafactory.model.model_utils.checkpointing import prepare_model_for_training as _prep

    _prep(model, model_args)


def dataset_attrs(dataset_names, dataset_dir) -> list:
    """The host's ``dataset_info.json`` resolution: one DatasetAttr per name."""
    from llamafactory.data.parser import get_dataset_list

    return get_dataset_list(dataset_names, dataset_dir)


def parse_train_args_only(args: dict):
    """The host's dataclasses for a train dict, without ``get_train_args``'s environment checks
    (no GPU, DeepSpeed or dataset needed): model, data, training, finetuning, generating args."""
    from llamafactory.hparams.parser import _parse_train_args

    return _parse_train_args(args)


def layernorm_names() -> set:
    from llamafactory.extras.constants import LAYERNORM_NAMES

    return set(LAYERNORM_NAMES)


def init_adapter_is_wrapped() -> bool:
    """Whether the pack's ``init_adapter`` wrapper (which runs the strategies' model hooks) is installed."""
    from llamafactory.model import loader

    return hasattr(loader.init_adapter, "_lfx_original")


def get_template(tokenizer, data_args):
    """The host's chat template for ``data_args.template`` (fixes the tokenizer's special tokens in place)."""
    from llamafactory.data import get_template_and_fix_tokenizer

    return get_template_and_fix_tokenizer(tokenizer, data_args)


def train_arg_classes() -> list:
    """The host's train-argument dataclasses (ModelArguments, DataArguments, ...)."""
    from llamafactory.hparams import parser

    return list(parser._TRAIN_ARGS)


def plot_loss(output_dir: str, keys: list[str]) -> None:
    from llamafactory.extras.ploting import plot_loss as _plot

    _plot(output_dir, keys=keys)


def trainer_callbacks(model_args, data_args, finetuning_args, generating_args, training_args) -> list:
    """The callbacks the host's ``_training_function`` adds, for plugin stages."""
    from transformers import EarlyStoppingCallback

    from llamafactory.train.callbacks import LogCallback, ReporterCallback

    callbacks = [LogCallback()]
    if finetuning_args.early_stopping_steps is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=finetuning_args.early_stopping_steps))
    callbacks.append(ReporterCallback(model_args, data_args, finetuning_args, generating_args))
    return callbacks
