"""Every argument of every `llamafactory-ext` command and sub-command has help text."""

from __future__ import annotations

import argparse


def _walk(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", "(the command itself)", helps.get(name)
                yield from _walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_cli_argument_has_help():
    from llama_factory_ext.cli import build_parser

    entries = list(_walk(build_parser(), "llamafactory-ext"))
    assert len(entries) > 40  # the whole tree was walked
    missing = [f"{cmd}: {arg}" for cmd, arg, text in entries if not (text and text.strip()) and text != argparse.SUPPRESS]
    assert not missing, "arguments without help text:\n" + "\n".join(missing)


def test_help_walker_sees_a_missing_help():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    p = sub.add_parser("x", help="x")
    p.add_argument("--no-help")
    assert [(c, a) for c, a, t in _walk(parser, "p") if not t] == [("p x", "--no-help")]
