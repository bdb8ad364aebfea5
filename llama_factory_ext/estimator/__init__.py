"""Pre-flight peak-GPU-memory estimate of a recipe: model built on the meta device with the run's own adapter
code (exact parameter counts), an analytical memory model, plugin terms (``lfx_memory_terms``), verdict, advice.

``estimate_recipe("recipe.yaml", gpus=1, gpu_memory="80GiB").peak_bytes``
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from .spec import EstimateSpec, ModelDims, ParamStats

__all__ = ["EstimateSpec", "ModelDims", "ParamStats", "estimate_recipe", "estimate_run", "spec_from_recipe"]


def spec_from_recipe(path_or_dict: Union[str, Path, dict], gpus: int = 1, overrides: Optional[dict] = None,
                     config_path: Optional[str] = None) -> EstimateSpec:
    """Parse a recipe like ``llamafactory-cli train`` would and build the meta model."""
    from ..config import prepare
    from .build import load_recipe, make_spec, parse_host_args

    from ..recipes import resolve_paths

    raw, source = load_recipe(path_or_dict, overrides)
    raw = resolve_paths(raw, source, keep=tuple(overrides or ()))  # dataset_dir relative to the recipe, as in training
    run = prepare(raw, source=source, data=False)  # keys only: data problems are reported by validate and train
    model_args, data_args, training_args, finetuning_args, _ = parse_host_args(run, source)
    base_dir = str(Path(source).parent) if source else None
    model_path = Path(str(model_args.model_name_or_path))
    if base_dir and not model_path.is_absolute() and not model_path.exists() and (Path(base_dir) / model_path).exists():
        model_args.model_name_or_path = str(Path(base_dir) / model_path)
    return make_spec(run, model_args, data_args, training_args, finetuning_args, gpus=gpus, config_path=config_path,
                     base_dir=base_dir)


def estimate_recipe(path_or_dict: Union[str, Path, dict], gpus: int = 1, gpu_memory=None,
                    overrides: Optional[dict] = None, config_path: Optional[str] = None, gpu: Optional[str] = None,
                    advice: bool = True):
    """Estimate a recipe (file or dict). ``gpu_memory``: bytes or text like ``80GiB``; ``gpu``: a name like H100.

    Returns an :class:`~llama_factory_ext.estimator.core.Estimate` (``.peak_bytes``, ``.components``,
    ``.verdict``, ``.advice``, ``.to_json()``).
    """
    from .core import estimate_spec, gpu_memory_of, parse_memory

    mem = parse_memory(gpu_memory) if gpu_memory is not None else (gpu_memory_of(gpu) if gpu else None)
    spec = spec_from_recipe(path_or_dict, gpus=gpus, overrides=overrides, config_path=config_path)
    return estimate_spec(spec, mem, gpu_name=gpu, advice=advice)


def estimate_run(run, gpu_memory: Optional[int] = None, gpu_name: Optional[str] = None, advice: bool = True):
    """Estimate a training run whose host arguments are parsed (``run.host``), before weights load."""
    from .build import make_spec
    from .core import estimate_spec

    h = run.host
    base_dir = str(Path(run.source).parent) if run.source else None
    spec = make_spec(run, h.model_args, h.data_args, h.training_args, h.finetuning_args, base_dir=base_dir)
    return estimate_spec(spec, gpu_memory, gpu_name=gpu_name, advice=advice)
