"""Example plugin: strategy ``train_norms`` (also train RMSNorm weights), a memory term, a recipe folder."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llama_factory_ext import hookimpl
from llama_factory_ext.api import MemoryTerm, Strategy


class TrainNormsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train_norms_pattern: str = Field("norm", description="substring of the parameter names to make trainable")


class TrainNorms(Strategy):
    name = "train_norms"
    help = "Also train normalisation weights (any base method)."
    args_model = TrainNormsArgs

    def on_model_loaded(self, model, opts, run):
        for name, param in model.named_parameters():
            if opts.train_norms_pattern in name and param.ndim == 1:
                param.data = param.data.float()
                param.requires_grad_(True)
        return model


@hookimpl
def lfx_register_strategies(register):
    register(TrainNorms())


@hookimpl
def lfx_memory_terms(spec):
    if "train_norms" in getattr(spec, "strategy_names", []):
        return [MemoryTerm("example: norm weights fp32 copy", 0.0, "tiny; shown to demonstrate the hook")]
    return None


@hookimpl
def lfx_recipe_dirs():
    return [Path(__file__).parent / "recipes"]
