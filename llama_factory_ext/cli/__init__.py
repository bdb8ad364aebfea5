"""``llamafactory-ext``: the pack's command line, in the host's style (``llamafactory-ext COMMAND -h``).

One module per command in this package, each with ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..api import UserError

# command -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS = {
    "plugins": ("llama_factory_ext.cli.plugins", "list plugins, their versions, hooks, strategies and stages"),
    "doctor": ("llama_factory_ext.cli.doctor", "check host, torch, CUDA, bitsandbytes and activation; say how to fix"),
    "demo": ("llama_factory_ext.cli.demo", "build a tiny local Llama and train a bundled recipe on CPU"),
    "tiny-model": ("llama_factory_ext.cli.tiny_model", "build the tiny local Llama the tiny_* recipes use (./tiny_llama)"),
    "estimate": ("llama_factory_ext.cli.estimate", "peak GPU memory estimate for a recipe, with verdict and advice"),
    "recipes": ("llama_factory_ext.cli.recipes", "list / show / copy / validate recipes"),
    "validate": ("llama_factory_ext.cli.validate", "validate recipe files (same as `recipes validate`)"),
    "baseline": ("llama_factory_ext.cli.baseline", "TF-IDF + linear baseline on a cls recipe's split"),
    "compare": ("llama_factory_ext.cli.compare", "compare a finished cls run with its TF-IDF baseline (error analysis)"),
    "predict": ("llama_factory_ext.cli.predict", "classify new texts with a finished cls run"),
    "export": ("llama_factory_ext.cli.export", "merge LoRA and export a cls run for AutoModelForSequenceClassification"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamafactory-ext",
        description="llama-factory-ext: plugins for LLaMA-Factory. Train with the host's own `llamafactory-cli train RECIPE.yaml`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    _star_positionals_optional(parser)
    return parser


def _star_positionals_optional(parser: argparse.ArgumentParser) -> None:
    """A ``nargs="*"`` positional takes zero values, but argparse lists it as required when another argument is
    missing (``required: recipe, overrides``); mark each optional, in every sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _star_positionals_optional(child)
        elif not action.option_strings and action.nargs == "*":
            action.required = False
            if action.default is None:
                action.default = []


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UserError as err:
        print(err.render(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
