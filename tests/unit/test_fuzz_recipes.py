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


@pytest.mark.parametrize("base", ["tiny_cls.yaml", "tiny_sft.yaml"])
def test_every_key_with_every_odd_value(base):
    """The sweep beside the random search: each pack key and common host key set to each odd value, data read."""
    recipe = fc._base_recipe(base)
    bad = []
    for key in sorted(set(fc.HOST_SAMPLE) | set(fc.pack_keys())):
        for value in fc.ODD_VALUES + ("\ud800",):
            out = fc.run_recipe_dict({**recipe, key: value}, True, HOST_KEYS)
            if not out.ok:
                bad.append(f"{key}={value!r:.40}: {out.kind}: {out.detail.strip().splitlines()[-1][:200]}")
    assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize("base, key, value, said", [
    ("tiny_cls.yaml", "lora_target", [{"a": 1}], None),  # was: TypeError in cls_head's check
    ("tiny_sft.yaml", "dataset", 5, "key `dataset`: dataset '5' is not in"),  # was: TypeError 'int' is not iterable
    ("tiny_sft.yaml", "dataset_dir", "a" * 5000, "key `dataset_dir`: "),  # was: OSError name too long
    ("tiny_cls.yaml", "output_dir", "\ud800", None),  # was: UnicodeEncodeError listing the run folder
])
def test_found_by_the_harness(base, key, value, said):
    out = fc.run_recipe_dict({**fc._base_recipe(base), key: value}, True, HOST_KEYS)
    assert out.ok, out.detail
    if said:
        assert out.kind == "clean error" and said in out.detail


def test_json_recipe_with_a_lone_surrogate_is_refused_naming_the_key(tmp_path):
    from llama_factory_ext.api import UserError
    from llama_factory_ext.recipe.load import read_recipe

    (tmp_path / "r.json").write_text('{"stage": "cls", "dataset_dir": "data\\ud800", "x": {"y": ["\\udfff"]}}')
    with pytest.raises(UserError) as err:
        read_recipe(tmp_path / "r.json")
    assert err.value.problems == [f"key `{k}`: a lone surrogate character (a broken \\uXXXX escape) is not valid text"
                                  for k in ("dataset_dir", "x.y")]
    assert err.value.source == str(tmp_path / "r.json")


def test_top_level_scalar_says_what_is_wrong():
    """Was: 'cannot read the YAML: ' and nothing after (OmegaConf's empty AssertionError)."""
    out = fc.run_recipe_file(b"5\n", ".yaml", "scalar_top", HOST_KEYS)
    assert out.kind == "clean error" and "must be a mapping of key: value" in out.detail
