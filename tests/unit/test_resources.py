"""The bundled recipes (resources.builtin_dir: recipes/ in a source tree)."""

from __future__ import annotations

from pathlib import Path

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_recipes_use_warmup_steps_not_the_deprecated_ratio():
    import yaml

    for path in RECIPES.glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        assert "warmup_ratio" not in raw, path.name
    assert yaml.safe_load((RECIPES / "llama3_cls.yaml").read_text())["warmup_steps"] == 0.1
