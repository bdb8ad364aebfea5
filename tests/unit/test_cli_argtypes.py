"""cli/argtypes.py: each type accepts and refuses; every number and path argument of every command uses one."""

from __future__ import annotations

import argparse
import os

import pytest

from llama_factory_ext.cli import argtypes, build_parser

GIB = 1024**3

# arguments that are free text by design (column names, key=value overrides, choices, mixed names/paths/overrides)
FREE_TEXT = {
    ("baseline", "overrides"), ("demo", "overrides"), ("estimate", "overrides"),
    ("predict", "--text-column"), ("predict", "--pair-column"),
    ("validate", "paths"), ("recipes validate", "paths"),
}


def _actions(parser: argparse.ArgumentParser, path: str = ""):
    """(command path, argument name, action) for every argument of every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}".strip())
        elif not isinstance(action, argparse._HelpAction):
            yield path, "/".join(action.option_strings) or action.dest, action


def _unvalidated(parser) -> list[str]:
    bad = []
    for cmd, arg, action in _actions(parser):
        if action.nargs == 0 or action.choices is not None or (cmd, arg) in FREE_TEXT:
            continue  # flags, fixed choices, declared free text
        if not getattr(action.type, "expects", None):
            bad.append(f"{cmd} {arg} (type {getattr(action.type, '__name__', action.type)})")
    return bad


def test_every_value_argument_of_every_command_is_validated():
    parser = build_parser()
    seen = {(cmd, arg) for cmd, arg, _ in _actions(parser)}
    assert {("predict", "--batch-size"), ("estimate", "--gpu-memory"), ("recipes copy", "dest")} <= seen
    assert len(seen) > 40  # the whole tree was walked
    assert not (FREE_TEXT - seen), "FREE_TEXT names arguments that no longer exist"
    assert _unvalidated(parser) == []


def test_the_walk_finds_an_unvalidated_number_or_path():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    p = sub.add_parser("x")
    p.add_argument("--n", type=int)
    p.add_argument("--out")
    p.add_argument("--ok", type=argtypes.positive_int)
    p.add_argument("--flag", action="store_true")
    assert _unvalidated(parser) == ["x --n (type int)", "x --out (type None)"]


def test_defaults_are_valid():
    """Every string default goes through its type (argparse converts it when the argument is absent)."""
    parser = build_parser()
    for cmd, arg, action in _actions(parser):
        if isinstance(action.default, str) and getattr(action.type, "expects", None):
            action.type(action.default)


@pytest.mark.parametrize("fn, good, bad", [
    (argtypes.positive_int, {"1": 1, "16": 16, " 3 ": 3}, ["0", "-1", "2.5", "x", ""]),
    (argtypes.non_negative_int, {"0": 0, "20": 20}, ["-1", "1e3", "nan"]),
    (argtypes.positive_float, {"1": 1.0, "0.01": 0.01, "1e3": 1000.0}, ["0", "-1", "inf", "nan", "x"]),
    (argtypes.probability, {"1": 1.0, "0.9": 0.9, "1e-3": 0.001}, ["0", "1.01", "-0.5", "nan"]),
    (argtypes.memory_size, {"80": 80 * GIB, "80GiB": 80 * GIB, "80 gib": 80 * GIB, "79.2": int(79.2 * GIB),
                            "80GB": 80 * 10**9, "24G": 24 * 10**9, "81920MiB": 80 * GIB, "1MiB": 2**20,
                            "2147483648B": 2 * GIB, "64TiB": 64 * 1024 * GIB},
     ["0", "-80", "80 bytes", "1KiB", "0.0001", "65TiB", "1e3", "", "GiB"]),
])
def test_numbers(fn, good, bad):
    for text, value in good.items():
        assert fn(text) == value, text
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            fn(text)


def test_paths(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x")
    d = tmp_path / "d"
    d.mkdir()
    assert argtypes.existing_file(str(f)) == str(f)
    assert argtypes.existing_folder(str(d)) == str(d)
    for fn, value, why in ((argtypes.existing_file, d, "it is a folder"),
                           (argtypes.existing_file, tmp_path / "no", "no such file"),
                           (argtypes.existing_folder, f, "it is a file"),
                           (argtypes.existing_folder, tmp_path / "no", "no such folder"),
                           (argtypes.existing_file, "", "an existing file")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            fn(str(value))
    # outputs: new (missing folders in between are created by the command) or existing of the right kind
    assert argtypes.output_file(str(tmp_path / "new" / "p.jsonl")) and argtypes.output_file(str(f))
    assert argtypes.output_folder(str(d)) and argtypes.output_folder(str(tmp_path / "x" / "y"))
    assert argtypes.output_file_or_folder(str(d)) and argtypes.output_file_or_folder(str(tmp_path / "c.yaml"))
    for fn, value, why in ((argtypes.output_file, d, "it is a folder"), (argtypes.output_folder, f, "it is a file"),
                           (argtypes.output_folder, f / "sub", "is a file, not a folder"),
                           (argtypes.output_file, f / "sub" / "p.jsonl", "is a file, not a folder"),
                           (argtypes.output_file_or_folder, f, "it is a file")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            fn(str(value))
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(argparse.ArgumentTypeError, match="no permission"):
            argtypes.output_folder(str(ro / "out"))


def test_model_recipe_and_gpu_names(tmp_path, workdir):
    assert argtypes.model_path(str(tmp_path)) == str(tmp_path)
    assert argtypes.model_path("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    (tmp_path / "w.bin").write_text("x")
    for bad in (str(tmp_path / "w.bin"), "./gone", "/no/such/model/"):
        with pytest.raises(argparse.ArgumentTypeError, match="model folder"):
            argtypes.model_path(bad)
    recipe = workdir / "tiny_cls.yaml"
    assert argtypes.recipe(str(recipe)) == str(recipe)
    assert argtypes.recipe("tiny_cls").endswith("tiny_cls.yaml")
    with pytest.raises(argparse.ArgumentTypeError, match="no recipe named 'tiny_clz'.*did you mean `tiny_cls`"):
        argtypes.recipe("tiny_clz")
    with pytest.raises(argparse.ArgumentTypeError, match="it is a folder"):
        argtypes.recipe(str(workdir))
    assert argtypes.gpu_name("nvidia h100") == "nvidia h100" and argtypes.bundled_recipe("tiny_cls") == "tiny_cls"
    with pytest.raises(argparse.ArgumentTypeError, match="known GPU name.*H100"):
        argtypes.gpu_name("H1000")
    with pytest.raises(argparse.ArgumentTypeError, match="bundled recipe.*tiny_cls"):
        argtypes.bundled_recipe("../secret")


@pytest.mark.parametrize("argv, argument, expected", [
    (["predict", "run", "--input", "in.txt", "--batch-size", "0"], "--batch-size", "a whole number of at least 1"),
    (["predict", "run", "--input", "in.txt", "--batch-size", "-1"], "--batch-size", "a whole number of at least 1"),
    (["predict", "run", "--input", "missing.txt"], "--input", "an existing file"),
    (["predict", "missing_run", "--input", "in.txt"], "run_dir", "an existing folder"),
    (["predict", "run", "--input", "in.txt", "--output", "run"], "--output", "a file path"),
    (["estimate", "tiny_cls", "--gpu-memory", "0"], "--gpu-memory", "a memory size"),
    (["estimate", "tiny_cls", "--gpus", "0"], "--gpus", "at least 1"),
    (["estimate", "tiny_cls", "--config", "run"], "--config", "an existing file"),
    (["compare", "run", "--confident", "1.5"], "--confident", "a probability"),
    (["compare", "run", "--examples", "-1"], "--examples", "at least 0"),
    (["baseline", "tiny_cls", "--C", "0"], "--C", "a positive number"),
    (["baseline", "tiny_cls", "--output", "in.txt"], "--output", "a folder"),
    (["export", "run", "--out", "in.txt"], "--out", "a folder"),
    (["tiny-model", "in.txt"], "dir", "a folder"),
    (["demo", "--dir", "in.txt"], "--dir", "a folder"),
    (["recipes", "copy", "tiny_cls", "in.txt"], "dest", "a folder or a .yaml file"),
    (["recipes", "show", "nope"], "name", "no recipe named 'nope'"),
])
def test_the_parser_names_the_argument(argv, argument, expected, tmp_path, monkeypatch, capsys, recipes_dir):
    """argparse prints one line `llamafactory-ext CMD: error: argument ARG: expected ...` and exits 2."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "in.txt").write_text("a text\n")
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"llamafactory-ext {argv[0]}") and f"error: argument {argument}" in last, last
    assert expected in last, last


def test_good_values_parse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "in.txt").write_text("a text\n")
    a = build_parser().parse_args(["predict", "run", "--input", "in.txt", "--output", "out/p.jsonl"])
    assert (a.batch_size, a.output, a.run_dir) == (16, "out/p.jsonl", "run")
    a = build_parser().parse_args(["estimate", "tiny_cls", "--gpu-memory", "80", "--gpus", "2"])
    assert (a.gpu_memory, a.gpus) == (80 * GIB, 2) and a.recipe.endswith("tiny_cls.yaml")
    a = build_parser().parse_args(["compare", "run"])
    assert (a.examples, a.confident) == (20, None)
