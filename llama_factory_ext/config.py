"""Old name, kept while branches merge: see :mod:`.recipe` (``prepare``) and :mod:`.recipe.compose`."""

from .recipe import prepare
from .recipe.compose import HOST_STAGES, MAX_UNKNOWN_LISTED, YAML_NO_KEYS, compose, parse_finetuning_type

__all__ = ["HOST_STAGES", "MAX_UNKNOWN_LISTED", "YAML_NO_KEYS", "compose", "parse_finetuning_type", "prepare"]
