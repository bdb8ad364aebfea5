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
    that composes with any base. ``compatible_bases``: the bases it works on (None = any). ``stages``: stages it
    supports (None = any). ``args_model``: pydantic model of the YAML keys it owns.
    """

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    base: ClassVar[Optional[str]] = None
    compatible_bases: ClassVar[Optional[tuple[str, ...]]] = None
    stages: ClassVar[Optional[tuple[str, ...]]] = None
    args_model: ClassVar[Optional[type]] = None
    # True when the model it trains differs from its base's only through host arguments (``rewrite_args``): the
    # estimator may then count it by formula; False makes ``estimate`` build the model on the meta device
    formula_safe: ClassVar[bool] = False

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

    def notes(self, run: "Run") -> list[str]:
        """Lines ``validate`` prints under a valid recipe that selects this strategy (no weights may load)."""
        return []


class Stage:
    """A training stage selectable by ``stage:``. ``run_stage`` replaces the host's workflow; the other methods tell
    the host's commands and LLaMA Board what to do with the stage's runs (defaults: nothing special)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    label: ClassVar[str] = ""  # LLaMA Board's stage dropdown (default: "NAME (plugin)")
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

    def finished_run(self, path: str) -> bool:
        """Whether folder ``path`` holds a finished run of this stage. The host's ``export`` of such a folder (LLaMA
        Board's Export tab sends no ``stage``) goes to :meth:`export`; chat, api and eval refuse it."""
        return False

    def export(self, run: "Run") -> None:
        """``llamafactory-cli export`` of a recipe with this stage (the host's export would drop what it trained)."""
        raise UserError(f"stage `{self.name}` has no export; export its run with the plugin's own command")

    def export_note(self, run_dir: str) -> str:
        """The line printed when the host's ``export`` of ``run_dir`` is routed to this stage."""
        return f"{run_dir} is a run of stage `{self.name}`: exporting it as that stage does"

    def generation_refusal(self, run_dir: Optional[str]) -> str:
        """Why chat, api and eval (which generate text) do not load a run of this stage; what to use instead."""
        return f"stage `{self.name}` does not train a text generator; chat, api and eval cannot load its runs"

    def ui_results(self, output_dir: str) -> Optional[str]:
        """Markdown with a finished run's results, shown in LLaMA Board after training (None = nothing)."""
        return None

    def ui_host_keys(self) -> dict[str, str]:
        """Host keys LLaMA Board's pack section offers while this stage is selected: {key: help}."""
        return {}

    def ui_train_args(self, args: dict) -> dict:
        """The recipe a LLaMA Board training run of this stage uses, from the host's UI arguments."""
        return args

    def ui_eval_args(self, args: dict, run_dirs: list[str]) -> dict:
        """The Evaluate tab's arguments for a run of this stage (``run_dirs``: the selected checkpoints)."""
        return {**args, "stage": self.name}


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
    host_args: dict = field(default_factory=dict)  # the keys the host will parse (pack keys taken out)
    base_type: str = "lora"
    strategies: list = field(default_factory=list)  # [(Strategy, opts)]
    stage: Optional[Stage] = None
    stage_opts: Any = None
    settings: dict = field(default_factory=dict)
    parsed: HostArgs = field(default_factory=HostArgs)  # the host's dataclasses, once it parsed ``host_args``
    extras: dict = field(default_factory=dict)

    @property
    def strategy_names(self) -> list[str]:
        return [s.name for s, _ in self.strategies]

    def opts(self, name: str):
        for s, o in self.strategies:
            if s.name == name:
                return o
        return None
