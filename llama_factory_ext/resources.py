"""Files shipped with the pack."""

from __future__ import annotations

from pathlib import Path


def builtin_dir() -> Path:
    """Bundled recipes: ``llama_factory_ext/_recipes`` in the wheel, ``recipes/`` in a source tree."""
    here = Path(__file__).resolve().parent
    shipped = here / "_recipes"
    return shipped if shipped.is_dir() else here.parent / "recipes"
