"""Pre-flight peak-GPU-memory estimate of a recipe: model built on the meta device with the run's own adapter
code (exact parameter counts), an analytical memory model, plugin terms (``lfx_memory_terms``), verdict, advice.

``estimate_recipe("recipe.yaml", gpus=1, gpu_memory="80GiB").peak_bytes``
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from .spec import EstimateSpec, ModelDims, ParamStats

__all__ = ["EstimateSpec", "ModelDims", "ParamStats", "estimate_recipe", "estimate_run", "estimate_with_data_lengths",
           "spec_from_recipe"]


def _local_model_path(name: str, base_dir: Optional[str]) -> str:
    """A relative model folder that exists next to the recipe, else ``name`` unchanged."""
    model_path = Path(str(name))
    if base_dir and not model_path.is_absolute() and not model_path.exists() and (Path(base_dir) / model_path).exists():
        return str(Path(base_dir) / model_path)
    return name


def spec_from_recipe(path_or_dict: Union[str, Path, dict], gpus: int = 1, overrides: Optional[dict] = None,
                     config_path: Optional[str] = None, fast: bool = True, progress=None) -> EstimateSpec:
    """Parse a recipe like ``llamafactory-cli train`` would and build the meta model.

    ``fast``: count Llama-family LoRA/full builds by formula when the host's argument names are cached (see
    ``estimator.fast``); ``progress(text)`` is told when the slow meta-device build runs."""
    from ..recipe import prepare
    from ..recipe.load import read_recipe, resolve_paths, with_overrides

    source = None if isinstance(path_or_dict, dict) else str(path_or_dict)
    raw = with_overrides(dict(path_or_dict) if source is None else read_recipe(source), overrides)
    raw = resolve_paths(raw, source, keep=tuple(overrides or ()))  # dataset_dir relative to the recipe, as in training
    base_dir = str(Path(source).parent) if source else None
    if fast:
        from ..host.keys import cached_host_args
        from .fast import fast_spec

        defaults = cached_host_args()
        if defaults is not None:
            run = prepare(raw, source=source, host_keys=set(defaults), data=False, host_types=False)
            if "model_name_or_path" in run.host_args:
                run.host_args["model_name_or_path"] = _local_model_path(run.host_args["model_name_or_path"], base_dir)
            try:
                spec = fast_spec(run, gpus=gpus, config_path=config_path, base_dir=base_dir, defaults=defaults,
                                 progress=progress)
            except (ValueError, TypeError, KeyError, AttributeError):
                spec = None  # e.g. a mistyped value: the host's own parser below names the key
            if spec is not None:
                return spec
    if progress is not None:
        progress("building the model on the meta device with the host's own code (imports torch, transformers, "
                 "peft and LLaMA-Factory: several seconds)")
    from .build import make_spec, parse_host_args

    run = prepare(raw, source=source, data=False)  # keys only: data problems are reported by validate and train
    model_args, data_args, training_args, finetuning_args, _ = parse_host_args(run, source)
    model_args.model_name_or_path = _local_model_path(model_args.model_name_or_path, base_dir)
    spec = make_spec(run, model_args, data_args, training_args, finetuning_args, gpus=gpus, config_path=config_path,
                     base_dir=base_dir)
    from ..host.keys import cached_host_args, write_host_args_cache
    from .fast import remember_label_count

    if cached_host_args() is None:
        write_host_args_cache()
    if spec.is_cls and not any(n.startswith("number of labels") for n in spec.notes):
        remember_label_count(run, data_args, spec.dims.num_labels)
    return spec


def estimate_recipe(path_or_dict: Union[str, Path, dict], gpus: Optional[int] = None, gpu_memory=None,
                    overrides: Optional[dict] = None, config_path: Optional[str] = None, gpu: Optional[str] = None,
                    advice: bool = True, fast: bool = True, progress=None, nodes: Optional[int] = None,
                    accelerate_config: Optional[str] = None):
    """Estimate a recipe (file or dict). ``gpu_memory``: bytes or text like ``80GiB``; ``gpu``: a name like H100;
    ``gpus``: GPUs per machine, ``nodes``: machines (default: the accelerate config's, else 1);
    ``accelerate_config``: the ``accelerate launch --config_file`` YAML (FSDP / DeepSpeed settings).

    Returns an :class:`~llama_factory_ext.estimator.core.Estimate` (``.peak_bytes``, ``.components``,
    ``.verdict``, ``.advice``, ``.to_json()``).
    """
    from .core import estimate_spec, gpu_memory_of, parse_memory

    mem = parse_memory(gpu_memory) if gpu_memory is not None else (gpu_memory_of(gpu) if gpu else None)
    launch = None
    if accelerate_config:
        from .distributed import read_accelerate_config

        launch = read_accelerate_config(accelerate_config)
        if nodes is None:
            nodes = launch.machines
        if gpus is None and launch.processes:
            gpus = max(launch.processes // max(nodes or 1, 1), 1)
    spec = spec_from_recipe(path_or_dict, gpus=gpus or 1, overrides=overrides, config_path=config_path, fast=fast,
                            progress=progress)
    if nodes:
        spec = spec.replace(nodes=int(nodes))
    if launch is not None:
        spec = apply_launch(spec, launch, accelerate_config)
    return estimate_spec(spec, mem, gpu_name=gpu, advice=advice)


def apply_launch(spec, launch, source: str):
    """The spec under an accelerate config's FSDP or DeepSpeed settings."""
    from .distributed import zero_setup

    notes = list(spec.notes) + list(launch.notes)
    if launch.fsdp is not None:
        if spec.zero_stage is not None:
            from ..api import UserError

            raise UserError(f"{source}: FSDP, but the recipe also sets `deepspeed`; use one of them")
        spec = spec.replace(fsdp=launch.fsdp)
    elif launch.zero is not None and spec.zero_stage is None:
        z = zero_setup(launch.zero, spec.dims.hidden)
        spec = spec.replace(zero=z, zero_stage=z.stage, offload_optimizer=z.offload_optimizer,
                            offload_param=z.offload_param)
    spec.notes[:] = notes
    return spec


def estimate_run(run, gpu_memory: Optional[int] = None, gpu_name: Optional[str] = None, advice: bool = True):
    """Estimate a training run whose host arguments are parsed (``run.parsed``), before weights load."""
    from .build import make_spec
    from .core import estimate_spec

    h = run.parsed
    base_dir = str(Path(run.source).parent) if run.source else None
    spec = make_spec(run, h.model_args, h.data_args, h.training_args, h.finetuning_args, base_dir=base_dir)
    return estimate_spec(spec, gpu_memory, gpu_name=gpu_name, advice=advice)


def estimate_with_data_lengths(est, advice: bool = True):
    """Re-estimate ``est`` with the longest training sample (the host's tokenization, after cutoff_len) as the
    sequence length instead of ``cutoff_len``; needs the tokenizer locally. Packed data keeps ``est``."""
    if est.spec.data_args.packing:
        return est
    from .core import estimate_spec
    from .data_stats import train_lengths

    stats = train_lengths(est.spec)
    spec = est.spec.replace(seq_len=stats["max"])
    spec.notes.append(f"sequence length from the data: {stats['n']} samples, max {stats['max']}, "
                      f"p95 {stats['p95']}, median {stats['p50']} tokens (cutoff_len {est.spec.seq_len})")
    return estimate_spec(spec, est.gpu_memory, gpu_name=est.gpu_name, advice=advice)
