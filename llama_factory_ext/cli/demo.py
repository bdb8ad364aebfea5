"""``llamafactory-ext demo``: build a tiny local Llama, copy a bundled recipe and train it on CPU
through the host's own ``llamafactory-cli train`` (a subprocess, exactly as a user runs it)."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from . import argtypes


def add_arguments(parser):
    parser.add_argument("--recipe", default="tiny_cls", type=argtypes.bundled_recipe,
                        help="bundled recipe to run (default: tiny_cls)")
    parser.add_argument("--dir", default="lfx_demo", type=argtypes.output_folder,
                        help="working folder to create (default: ./lfx_demo)")
    parser.add_argument("overrides", nargs="*", help="host-style key=value overrides")


def run(args) -> int:
    from ..api import UserError
    from ..resources import builtin_dir
    from ..tiny import ensure_tiny_model

    src = builtin_dir()
    recipe = src / f"{args.recipe}.yaml"
    if not recipe.exists():
        names = sorted(p.stem for p in src.glob("*.yaml"))
        raise UserError(f"no bundled recipe '{args.recipe}' (have: {', '.join(names)})")
    work = Path(args.dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data").exists():
        shutil.copytree(src / "data", work / "data")
    shutil.copy(recipe, work / recipe.name)
    model_dir = work / "tiny_llama"  # where the tiny recipes look (next to the recipe); same as `tiny-model`
    if not (model_dir / "config.json").exists():
        print(f"building a tiny Llama (2 layers, hidden 64) in {model_dir} ...", flush=True)
    ensure_tiny_model(model_dir)
    cli = Path(sys.executable).with_name("llamafactory-cli")
    out_dir = work / "runs" / args.recipe
    cmd = [str(cli if cli.exists() else "llamafactory-cli"), "train", recipe.name,
           f"model_name_or_path={model_dir}", f"output_dir={out_dir}",
           "dataloader_pin_memory=false",  # a CPU run: torch warns that pinned memory needs an accelerator
           *args.overrides]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DISABLE_VERSION_CHECK="1")
    print("running:", " ".join(cmd), f"(in {work})", flush=True)
    rc = subprocess.call(cmd, cwd=str(work), env=env)
    if rc == 0:
        _summary(out_dir)
    return rc


def _summary(out_dir: Path) -> None:
    import json

    print(f"\ndemo finished; outputs in {out_dir}:")
    for name in sorted(p.name for p in out_dir.iterdir() if p.is_file()):
        print(f"  {name}")
    for name in ("eval_results.json", "predict_results.json", "all_results.json"):
        f = out_dir / name
        if f.exists():
            metrics = {k: v for k, v in json.loads(f.read_text()).items() if isinstance(v, (int, float))}
            shown = {k: round(v, 4) for k, v in metrics.items() if "accuracy" in k or "f1" in k}
            print(f"  {name}: {shown}")
    labels = _labels(out_dir)
    if labels:
        print(f"  (a random 2-layer model trained for a few steps: near chance, 1/{labels} = {1 / labels:.2f} accuracy, "
              "is expected; the demo shows the pipeline, not a model)")
    if (out_dir / "README.md").exists():
        print(f"model card: {out_dir / 'README.md'}; confusion matrix: {out_dir / 'confusion_matrix.png'}")
    if (out_dir / "predictions.jsonl").exists():
        work = out_dir.parent.parent
        exe = _exe("llamafactory-ext")
        print("next, against a TF-IDF baseline (runs as is in a new shell):")
        print(f"  cd {shlex.quote(str(work))} && {exe} baseline {out_dir.name}.yaml output_dir={shlex.quote(str(out_dir))} "
              f"&& {exe} compare {shlex.quote(str(out_dir))}")
    if sys.prefix != sys.base_prefix:  # a virtual environment: a new shell needs it on PATH
        print(f"in a new shell, first: source {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}  "
              "(then `llamafactory-ext` and `llamafactory-cli` are on PATH)")


def _exe(name: str) -> str:
    """``name`` next to this interpreter (works without the environment on PATH), else the bare name."""
    here = Path(sys.executable).with_name(name)
    return shlex.quote(str(here)) if here.exists() else name


def _labels(out_dir: Path) -> int:
    import json

    try:
        return len(json.loads((out_dir / "label_map.json").read_text()).get("labels") or [])
    except Exception:
        return 0
