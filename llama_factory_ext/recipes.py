"""Old name, kept while branches merge: see :mod:`.catalog`, :mod:`.recipe.load` and :mod:`.resources`."""

from .catalog import (HEADER_HARDWARE, HEADER_MEMORY, HEADER_RUN, RecipeInfo, all_recipes, find, read_header,
                      recipe_dirs)
from .recipe.load import PATH_KEYS, cli_override_keys, dataset_info, resolve_paths, with_overrides
from .recipe.load import read_recipe as load_yaml
from .resources import builtin_dir

__all__ = ["HEADER_HARDWARE", "HEADER_MEMORY", "HEADER_RUN", "PATH_KEYS", "RecipeInfo", "all_recipes", "builtin_dir",
           "cli_override_keys", "dataset_info", "find", "load_yaml", "read_header", "recipe_dirs", "resolve_paths",
           "with_overrides"]
