"""The pack's `llamafactory-cli` keys (cls_*, stage and strategy keys) with generated bad values, in a recipe file and
as `key=value` on the command line, through the real recipe reader and validate's checks: one problem per key, or a
recipe that train's prepare accepts too."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from unit import fuzzcases as fc

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
HOST_KEYS = fc.release_host_keys()


@FUZZ
@given(case=fc.pack_key_cases())
def test_generated_pack_keys_end_in_a_named_problem_or_an_accepted_recipe(case, source_host):
    out = fc.run_pack_key_case(*case, HOST_KEYS)
    assert out.ok, f"{out.kind}: {out.detail}\ncase: {case!r}"[:4000]


def test_a_bad_override_names_its_key(source_host):
    out = fc.run_pack_key_case("tiny_cls_layerwise.yaml", {}, ["layerwise_lr_decay=maybe"], HOST_KEYS)
    assert out.kind == "clean error" and "key `layerwise_lr_decay`" in out.detail, out.detail
    out = fc.run_pack_key_case("tiny_cls.yaml", {"cls_label_normalize": [1]}, [], HOST_KEYS)
    assert out.kind == "clean error" and "key `cls_label_normalize`" in out.detail, out.detail
