"""saferegex: patterns from recipes are refused when they can backtrack exponentially, and searched on a budget."""

from __future__ import annotations

import time

import pytest

from llama_factory_ext import saferegex
from llama_factory_ext.saferegex import PatternError, check_pattern, compile_pattern, search


def test_regex_overrides_have_bounded_cost():
    from llama_factory_ext.saferegex import PatternError, check_pattern

    for bad in ("(.+)+Z", "(a*)*", "(x+|y)+z", "((a+))+", "a" * 400):
        with pytest.raises(PatternError):
            check_pattern(bad)
    for good in (r"score", r"layers\.(\d+)\.", r".*lora_B.*", r"(\w+\.)*q_proj", r"(q|k|v)_proj"):
        check_pattern(good)


@pytest.mark.parametrize("pattern, said", [
    ("(.+)+Z", "nests repetition"),
    ("(?:a|b+)*c", "nests repetition"),  # a branch that is itself an unbounded repeat
    ("x(?=(a+)+)", "nests repetition"),  # inside a lookahead
    ("score(", "not a valid regular expression"),
    ("a" * 301, "301 characters is too long"),
    (5, "must be a string"),
])
def test_refusal_says_why(pattern, said):
    with pytest.raises(PatternError, match=said):
        check_pattern(pattern)


def test_bounded_repeats_and_sequences_are_allowed():
    for good in ("(a{1,3})+", "(ab+)+", "a" * 300, r"layers\.\d+\.(q|k)_proj"):
        check_pattern(good)


def test_compile_and_search_match_as_re_does():
    pattern = compile_pattern(r"layers\.(\d+)\.")
    assert search(pattern, "model.layers.12.mlp").group(1) == "12"
    assert search(pattern, "lm_head.weight") is None
    with pytest.raises(PatternError, match="nests repetition"):
        compile_pattern("(a*)*b")


def test_a_search_over_budget_is_stopped_with_the_pattern_named(monkeypatch):
    if not saferegex._HAS_TIMEOUT:
        pytest.skip("the regex engine with timeouts is not installed")
    monkeypatch.setattr(saferegex, "BUDGET_S", 0.05)
    slow = compile_pattern("(a|aa)+$")  # passes the check (no repeat nested in a repeat), still backtracks
    start = time.monotonic()
    with pytest.raises(PatternError, match=r"took over 0.05s"):
        search(slow, "a" * 40 + "!")
    assert time.monotonic() - start < 5
