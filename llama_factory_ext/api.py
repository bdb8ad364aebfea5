"""Objects that plugins register and receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

HOST_FINETUNING_TYPES = ("lora", "oft", "freeze", "full")
DISABLE_ENV = "LLAMA_FACTORY_EXT_DISABLE"


def pack_disabled() -> bool:
    """Whether ``LLAMA_FACTORY_EXT_DISABLE`` turns the pack off for ``llamafactory-cli``."""
    import os

    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


DISABLED_NOTE = (f"llama-factory-ext is disabled ({DISABLE_ENV} is set): `llamafactory-cli` runs the plain host, "
                 f"and recipes that use pack keys, strategies or stages stop; unset {DISABLE_ENV} to use them")


class UserError(Exception):
    """A problem with the user's input: printed as one clear message, no traceback."""

    def __init__(self, problems, source: Optional[str] = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        where = f" in {self.source}" if self.source else ""
        if len(self.problems) == 1:
            return f"llama-factory-ext: {self.problems[0]}" + (f" ({self.source})" if self.source else "")
        lines = [f"llama-factory-ext: {len(self.problems)} problems{where}:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class Strategy:
    """A fine-tuning strategy. Subclass and override what you need.

    ``base``: the host ``finetuning_type`` it builds on (``"lora"``...), or None for a modifier
    that composes with any base. ``bases``: bases it accepts (None = any). ``stages``: stages it
    supports (None = any). ``args_model``: pydantic model of the YAML keys it owns.
    """

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    base: ClassVar[Optional[str]] = None
    bases: ClassVar[Optional[tuple[str, ...]]] = None
    stages: ClassVar[Optional[tuple[str, ...]]] = None
    args_model: ClassVar[Optional[type]] = None

    def validate(self, opts, host_args: dict, run: "Run") -> list[str]:
        """Return problems (strings naming the key) with these options and host args."""
        return []

    def rewrite_args(self, opts, host_args: dict, run: "Run") -> None:
        """Change the host's argument dict in place, before the host parses it."""

    def on_model_loaded(self, model, opts, run: "Run"):
        """Change the model after the host (or a stage) built it and set up adapters."""
        return model

    def param_groups(self, model, training_args, opts, run: "Run") -> Optional[list[dict]]:
        """Return optimizer parameter groups (dicts with ``params``, ``lr``...), or None."""
        return None


class Stage:
    """A training stage selectable by ``stage:``. ``run_stage`` replaces the host's workflow."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    args_model: ClassVar[Optional[type]] = None

    def validate(self, opts, host_args: dict, run: "Run") -> list[str]:
        return []

    def check_data(self, opts, host_args: dict, run: "Run") -> list[str]:
        """Problems with the run's data (file, row, column), found before any weights load."""
        return []

    def rewrite_args(self, opts, host_args: dict, run: "Run") -> None:
        """Change host args before parsing (e.g. defaults that differ from the host's)."""

    def run_stage(self, model_args, data_args, training_args, finetuning_args, generating_args, callbacks, run):
        raise NotImplementedError


@dataclass
class MemoryTerm:
    """One line of a memory estimate, per GPU, in bytes."""

    name: str
    bytes: float
    note: str = ""


@dataclass
class HostArgs:
    model_args: Any = None
    data_args: Any = None
    training_args: Any = None
    finetuning_args: Any = None
    generating_args: Any = None


@dataclass
class Run:
    """What the pack knows about one training run (one per process)."""

    source: Optional[str] = None
    raw_args: dict = field(default_factory=dict)
    host_args: dict = field(default_factory=dict)
    base_type: str = "lora"
    strategies: list = field(default_factory=list)  # [(Strategy, opts)]
    stage: Optional[Stage] = None
    stage_opts: Any = None
    settings: dict = field(default_factory=dict)
    host: HostArgs = field(default_factory=HostArgs)
    extras: dict = field(default_factory=dict)

    @property
    def strategy_names(self) -> list[str]:
        return [s.name for s, _ in self.strategies]

    def opts(self, name: str):
        for s, o in self.strategies:
            if s.name == name:
                return o
        return None
