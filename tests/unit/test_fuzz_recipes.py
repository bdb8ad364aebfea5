"""Generated recipes (dicts and files) through the one recipe reader and ``prepare``: a Run, or a UserError whose every
problem names a key or the file; never another exception, never code run from a ``!!python`` tag."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from unit import fuzzcases as fc

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
HOST_KEYS = fc.release_host_keys()


@FUZZ
@given(case=fc.recipe_dicts(keys=fc.pack_keys()))
def test_generated_recipe_dicts_end_in_a_run_or_a_named_problem(case):
    raw, data = case
    out = fc.run_recipe_dict(raw, data, HOST_KEYS)
    assert out.ok, f"{out.kind}: {out.detail}\nrecipe: {raw!r}"[:4000]


@FUZZ
@given(case=fc.recipe_texts())
def test_generated_recipe_files_end_in_a_recipe_or_a_named_problem(case):
    data, suffix, mutation = case
    out = fc.run_recipe_file(data, suffix, mutation, HOST_KEYS)
    assert out.ok, f"{out.kind}: {out.detail}\nfile{suffix} ({mutation}): {data[:300]!r}"


@pytest.mark.parametrize("tag", fc._tags("{marker}")[:4] + fc._tags("{marker}")[-1:])
def test_python_tags_are_refused_and_run_nothing(tag):
    out = fc.run_recipe_file(b"stage: cls\n" + tag.encode(), ".yaml", "tag", HOST_KEYS)
    assert out.kind == "clean error", out.detail


def test_the_harness_sees_a_traceback_and_an_unnamed_problem(monkeypatch):
    """The property can fail: a crash in prepare and a problem that names nothing are not 'ok'."""
    from llama_factory_ext.recipe import checks

    monkeypatch.setattr(checks, "check", lambda *a, **k: 1 / 0)
    assert fc.run_recipe_dict({"stage": "cls"}, False, HOST_KEYS).kind == "traceback"
    monkeypatch.setattr(checks, "check", lambda *a, **k: (None, ["something is wrong"]))
    assert fc.run_recipe_dict({"stage": "cls"}, False, HOST_KEYS).kind == "other"
