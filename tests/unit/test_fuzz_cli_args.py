"""Generated argv for every ``llamafactory-ext`` command through the real parser (parse only): exit 2 with one error
line naming the argument, help, or values that passed their checks (no NaN, no count below its floor)."""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings

from unit import fuzzcases as fc

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


def test_every_command_is_generated():
    assert {"predict", "estimate", "compare", "export", "recipes copy", "validate", "tiny-model"} <= set(fc.cli_commands())


@pytest.fixture()
def recipes_read_once(monkeypatch):
    """The bundled recipes, read once for the whole run (each recipe-name argument reads them all: ~0.3 s)."""
    from llama_factory_ext import catalog

    monkeypatch.setattr(catalog, "all_recipes", functools.lru_cache(maxsize=1)(catalog.all_recipes))


@FUZZ
@given(case=fc.cli_argvs())
def test_generated_argv_parses_to_checked_values_or_one_named_error(recipes_read_once, case):
    cmd, argv = case
    out = fc.run_cli_argv(cmd, argv)
    assert out.ok, f"{out.kind}: {out.detail}\nargv: {argv!r}"[:4000]


def test_the_harness_sees_an_unchecked_number():
    """The property can fail: a parsed negative batch size or NaN is 'other'."""
    from types import SimpleNamespace

    assert fc._validated("predict", SimpleNamespace(batch_size=-1)) == "batch_size = -1"
    assert fc._validated("compare", SimpleNamespace(confident=float("nan")))
    assert fc.run_cli_argv("predict", ["predict", "{folder}", "--input", "{file}", "--batch-size", "4"]).kind == \
        "correct result"
    assert fc.run_cli_argv("predict", ["predict", "{folder}", "--input", "{file}", "--batch-size", "-1"]).kind == \
        "clean error"
