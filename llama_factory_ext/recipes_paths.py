"""Where the bundled recipes live (wheel: ``llama_factory_ext/_recipes``; source tree: ``recipes/``)."""

from pathlib import Path


def bundled_recipes_dir() -> Path:
    here = Path(__file__).resolve().parent
    shipped = here / "_recipes"
    return shipped if shipped.is_dir() else here.parent / "recipes"
