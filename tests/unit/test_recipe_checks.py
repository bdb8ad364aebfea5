"""recipe.checks: the one home of the checks train and validate share."""

from __future__ import annotations




def test_validation_has_one_home():
    import llama_factory_ext.cli.validate as cli
    import llama_factory_ext.recipe.checks as validation

    for name in ("_type_problems", "_range_problems", "_combination_problems", "_dataset_problems"):
        assert not hasattr(cli, name) and hasattr(validation, name)
