"""One recipe reader: `validate`, `estimate` and the host's own `read_args` see the same recipe (values typed alike,
``5e-5`` a float), and `estimate` refuses what `validate` refuses, with the same one message."""

from __future__ import annotations

import sys

import pytest

from conftest import run_cli
from llama_factory_ext.api import UserError


def _recipe(workdir, lr_text: str):
    """The bundled llama3_sft recipe with ``learning_rate`` written as ``lr_text``."""
    text = (workdir / "llama3_sft.yaml").read_text()
    assert "learning_rate: 1.0e-4\n" in text
    path = workdir / "lr.yaml"
    path.write_text(text.replace("learning_rate: 1.0e-4\n", f"learning_rate: {lr_text}\n"))
    return path


def _host_read(monkeypatch, path, overrides=()):
    from llamafactory.hparams.parser import read_args

    monkeypatch.setattr(sys, "argv", ["llamafactory-cli", str(path), *overrides])
    return read_args()


@pytest.mark.parametrize("lr_text, override", [("5e-5", None), ("2.0e-4", None), ("2.0e-4", "5e-5")])
def test_learning_rate_is_a_float_for_the_reader_validate_estimate_and_the_host(workdir, monkeypatch, lr_text,
                                                                                 override):
    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.recipe.load import parse_overrides, read_recipe, with_overrides
    from llama_factory_ext.recipe.validate import validate_file

    path = _recipe(workdir, lr_text)
    argv = [f"learning_rate={override}"] if override else []
    want = float(override or lr_text)

    raw = with_overrides(read_recipe(path), argv)
    assert type(raw["learning_rate"]) is float and raw["learning_rate"] == want
    assert raw == _host_read(monkeypatch, path, argv)  # the whole recipe, as the host reads it

    problems, _ = validate_file(path, argv)
    assert problems == []

    spec = spec_from_recipe(path, overrides=parse_overrides(argv))  # what `llamafactory-ext estimate` does
    lr = spec.run.host_args["learning_rate"]
    assert type(lr) is float and lr == want


def _bomb(levels: int = 9) -> str:
    lines, prev = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]'], "a"
    for name in "bcdefghij"[:levels]:
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
        prev = name
    return "\n".join(lines + ["learning_rate: 5e-5", ""])


@pytest.mark.parametrize("text, said", [
    ("learning_rate: 5e-5\nlearning_rate: 1e-4\n", "found duplicate key learning_rate"),
    (_bomb(), "YAML node expansion exceeds the configured limit"),
])
def test_estimate_refuses_what_validate_refuses(tmp_path, text, said):
    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.recipe.validate import validate_file

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        spec_from_recipe(path)
    problems, _ = validate_file(path)
    assert err.value.problems == problems and len(problems) == 1 and said in problems[0]

    for command, code in (("estimate", 2), ("validate", 1)):
        out = run_cli(["llamafactory-ext", command, path.name], tmp_path, timeout=120)
        text = out.stdout + out.stderr
        assert out.returncode == code and said in text and "Traceback" not in text, (command, text)
