"""Regexes from recipes, matched at a bounded cost.

A pattern is refused up front when it nests unbounded repetition (``(.+)+``, ``(a*)*``: exponential
backtracking) or is very long; matching then runs in the ``regex`` engine with a time budget.
"""

from __future__ import annotations

import re

try:
    import re._parser as _sre_parse  # Python >= 3.11
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore

try:
    import regex as _engine  # a transformers dependency; supports timeouts

    _HAS_TIMEOUT = True
except ImportError:  # pragma: no cover
    _engine = re
    _HAS_TIMEOUT = False

MAX_PATTERN_LEN = 300
BUDGET_S = 0.1  # per search; parameter names are short


class PatternError(ValueError):
    pass


_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def _is_unbounded_repeat(item) -> bool:
    op, av = item
    return str(op) in _REPEATS and (av[1] == _sre_parse.MAXREPEAT or av[1] > 16)


def _bare(items) -> list:
    """The body with group wrappers removed when a group is the only item."""
    items = list(items)
    while len(items) == 1 and str(items[0][0]) == "SUBPATTERN":
        items = list(items[0][1][-1])
    return items


def _nested(items) -> bool:
    """An unbounded repeat whose body is itself only an unbounded repeat (or a branch with one): ``(.+)+``."""
    for op, av in items:
        name = str(op)
        if name in _REPEATS:
            body = _bare(av[2])
            if _is_unbounded_repeat((op, av)):
                if len(body) == 1 and _is_unbounded_repeat(body[0]):
                    return True
                if len(body) == 1 and str(body[0][0]) == "BRANCH" and any(
                        len(_bare(br)) == 1 and _is_unbounded_repeat(_bare(br)[0]) for br in body[0][1][1]):
                    return True
            if _nested(av[2]):
                return True
        elif name == "SUBPATTERN" and _nested(av[-1]):
            return True
        elif name == "BRANCH" and any(_nested(br) for br in av[1]):
            return True
        elif name in ("ASSERT", "ASSERT_NOT") and _nested(av[1]):
            return True
    return False


def check_pattern(pattern: str) -> None:
    """Raise :class:`PatternError` with a reason when ``pattern`` is not a safe regular expression."""
    if not isinstance(pattern, str):
        raise PatternError(f"pattern {pattern!r} must be a string")
    if len(pattern) > MAX_PATTERN_LEN:
        raise PatternError(f"pattern of {len(pattern)} characters is too long (at most {MAX_PATTERN_LEN})")
    try:
        tree = _sre_parse.parse(pattern)
    except re.error as exc:
        raise PatternError(f"pattern {pattern!r} is not a valid regular expression ({exc})") from None
    if _nested(list(tree)):
        raise PatternError(
            f"pattern {pattern!r} nests repetition (like `(.+)+`), which can take exponential time; "
            "drop the outer repetition (e.g. `.+Z` instead of `(.+)+Z`)"
        )


def compile_pattern(pattern: str):
    """A compiled, checked pattern (raises :class:`PatternError`)."""
    check_pattern(pattern)
    try:
        return _engine.compile(pattern)
    except Exception as exc:
        raise PatternError(f"pattern {pattern!r} is not a valid regular expression ({exc})") from None


def search(compiled, text: str):
    """``compiled.search(text)`` within the time budget; over budget raises :class:`PatternError`."""
    if not _HAS_TIMEOUT:
        return compiled.search(text)
    try:
        return compiled.search(text, timeout=BUDGET_S)
    except TimeoutError:
        raise PatternError(f"pattern {compiled.pattern!r} took over {BUDGET_S}s on {text!r}; simplify it") from None
