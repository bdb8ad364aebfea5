"""``llamafactory-ext demo``: build a tiny local Llama, copy a bundled recipe and train it on CPU
through the host's own ``llamafactory-cli train`` (a subprocess, exactly as a user runs it)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("--recipe", default="tiny_cls", help="bundled recipe to run (default: tiny_cls)")
    parser.add_argument("--dir", default="lfx_demo", help="working folder to create (default: ./lfx_demo)")
    parser.add_argument("overrides", nargs="*", help="host-style key=value overrides")


def run(args) -> int:
    from ..api import UserError
    from ..recipes_paths import bundled_recipes_dir
    from ..tiny import build_tiny_llama, read_texts

    src = bundled_recipes_dir()
    recipe = src / f"{args.recipe}.yaml"
    if not recipe.exists():
        names = sorted(p.stem for p in src.glob("*.yaml"))
        raise UserError(f"no bundled recipe '{args.recipe}' (have: {', '.join(names)})")
    work = Path(args.dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data").exists():
        shutil.copytree(src / "data", work / "data")
    shutil.copy(recipe, work / recipe.name)
    model_dir = work / "tiny_llama"
    if not (model_dir / "config.json").exists():
        print(f"building a tiny Llama (2 layers, hidden 64) in {model_dir} ...", flush=True)
        build_tiny_llama(model_dir, texts=read_texts(work / "data" / "debian_sample_train.jsonl"))
    cli = Path(sys.executable).with_name("llamafactory-cli")
    cmd = [str(cli if cli.exists() else "llamafactory-cli"), "train", recipe.name,
           f"model_name_or_path={model_dir}", *args.overrides]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DISABLE_VERSION_CHECK="1")
    print("running:", " ".join(cmd), f"(in {work})", flush=True)
    return subprocess.call(cmd, cwd=str(work), env=env)
