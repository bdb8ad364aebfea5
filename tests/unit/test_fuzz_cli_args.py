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


def test_every_command_without_arguments_names_what_is_missing():
    """argparse's own message: one `error:` line naming each required argument, and only those (a `nargs="*"`
    positional without a default was listed as required: `required: recipe, overrides`)."""
    import argparse

    for cmd, parser in sorted(fc.cli_commands().items()):
        out = fc.run_cli_argv(cmd, cmd.split())
        assert out.ok, f"{cmd}: {out.kind}: {out.detail}"
        required = [a.metavar or a.dest for a in parser._actions
                    if a.required and not isinstance(a, argparse._SubParsersAction)]
        named = [a.option_strings[0] if a.option_strings else (a.metavar or a.dest) for a in parser._actions
                 if a.required and not isinstance(a, argparse._SubParsersAction)]
        if not required:
            assert out.kind == "correct result", f"{cmd}: {out.detail}"
            continue
        assert out.kind == "clean error" and out.detail.endswith(
            "error: the following arguments are required: " + ", ".join(named)), f"{cmd}: {out.detail}"
        assert "overrides" not in out.detail and "key=value" not in out.detail.replace("PATH|NAME|key=value", "")
