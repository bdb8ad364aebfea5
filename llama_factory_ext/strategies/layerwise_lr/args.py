from typing import Dict

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from ...saferegex import PatternError, check_pattern


class LayerwiseLrArgs(BaseModel):
    """YAML keys of strategy ``layerwise_lr``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, defer_build=True)

    layerwise_lr_decay: float = 1.0
    """Block i of L gets ``learning_rate * decay ** (L - 1 - i)``; embeddings ``decay ** L``. 1.0 = off."""
    layerwise_lr_overrides: Dict[str, float] = {}
    """Regex (``re.search`` on the parameter name) -> absolute lr. First match, in YAML order, wins."""

    @field_validator("layerwise_lr_decay")
    @classmethod
    def _decay_in_range(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise PydanticCustomError("layerwise_lr", "must be in (0, 1] (1.0 = no decay)")
        return v

    @field_validator("layerwise_lr_overrides")
    @classmethod
    def _patterns_compile(cls, v: Dict[str, float]) -> Dict[str, float]:
        bad = []
        for pattern, lr in v.items():
            try:
                check_pattern(pattern)
            except PatternError as exc:
                bad.append(str(exc))
            if not isinstance(lr, (int, float)) or not lr > 0:
                bad.append(f"pattern {pattern!r}: learning rate must be > 0, got {lr}")
        if bad:
            raise PydanticCustomError("layerwise_lr", "; ".join(bad))
        return v
