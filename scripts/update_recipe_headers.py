#!/usr/bin/env python3
"""Rewrite the generated lines of each recipe header in recipes/: the run command and the estimator's
predicted peak memory per GPU (``llama_factory_ext.estimator.estimate_recipe``). Other header lines
(purpose, ``# Hardware:``) are kept as written; the GPU memory for the verdict is read from the Hardware line.

    python scripts/update_recipe_headers.py          # rewrite
    python scripts/update_recipe_headers.py --check  # exit 1 and show the diff when a header is stale

Docs quote headers only inside ``<!-- recipe-header: NAME -->`` fenced blocks, which this script fills too.

Tiny recipes (model ``./tiny_llama``) are estimated with the config of ``llama_factory_ext.tiny``'s model.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
RUN = "# Run: "
HARDWARE = "# Hardware: "
MEMORY = "# Predicted peak memory: "


def tiny_config_path(workdir: Path) -> Path:
    from llama_factory_ext.tiny import build_tiny_llama, read_texts

    out = build_tiny_llama(workdir / "tiny_llama", texts=read_texts(RECIPES / "data" / "debian_sample_train.jsonl"))
    return out / "config.json"


def _gpu_memory(hardware: str):
    m = re.search(r"(\d+)\s*GB", hardware)
    return f"{m.group(1)}GB" if m else None


def generated_lines(path: Path, raw: dict, hardware: str, tiny_config: Path) -> tuple[str, str]:
    from llama_factory_ext.estimator import estimate_recipe

    local_model = str(raw.get("model_name_or_path", "")).startswith(".")
    run = f"{RUN}llamafactory-cli train {path.name}"
    if local_model:  # ./tiny_llama: built by `llamafactory-ext tiny-model` in the working folder
        run = f"{RUN}llamafactory-ext tiny-model && llamafactory-cli train {path.name}"
    mem = _gpu_memory(hardware)
    with contextlib.redirect_stdout(io.StringIO()):
        est = estimate_recipe(str(path), gpus=1, gpu_memory=mem, advice=False,
                              config_path=str(tiny_config) if local_model else None)
    peak = est.peak_bytes / 2**30
    text = f"{peak:.2f} GiB" if peak >= 0.1 else f"{est.peak_bytes / 2**20:.1f} MiB"
    where = f"1 GPU, {est.verdict} in {mem}" if mem else "1 GPU"
    if local_model:
        where += ", tiny local Llama"
    upper = est.upper_bytes / 2**30
    return run, f"{MEMORY}{text} per GPU, up to {upper:.2f} GiB (llamafactory-ext estimate; {where})"


def render(path: Path, tiny_config: Path) -> str:
    """The file with its header's generated lines rewritten."""
    import yaml

    text = path.read_text()
    lines = text.splitlines(keepends=True)
    n = 0
    while n < len(lines) and lines[n].startswith("#"):
        n += 1
    header, body = lines[:n], lines[n:]
    kept = [ln for ln in header if not ln.startswith((RUN, MEMORY))]
    hardware = next((ln[len(HARDWARE):].strip() for ln in kept if ln.startswith(HARDWARE)), "")
    run, memory = generated_lines(path, yaml.safe_load(text), hardware, tiny_config)
    at = next((i for i, ln in enumerate(kept) if ln.startswith(HARDWARE)), len(kept))
    new_header = kept[:at] + [run + "\n"] + kept[at:at + 1] + [memory + "\n"] + kept[at + 1:]
    return "".join(new_header + body)


DOCS = REPO / "docs"
DOC_BLOCK = re.compile(r"(<!-- recipe-header: (\w+) -->\n```yaml\n)(.*?)(```\n<!-- /recipe-header -->)", re.S)


def render_docs(text: str, headers: dict[str, str]) -> str:
    """Docs quote recipe headers only inside ``<!-- recipe-header: NAME -->`` blocks, filled from the recipe."""
    def fill(m):
        lines = [ln for ln in headers[m.group(2)].splitlines(True) if ln.startswith((RUN, HARDWARE, MEMORY))]
        return m.group(1) + "".join(lines) + m.group(4)

    return DOC_BLOCK.sub(fill, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a header is stale")
    parser.add_argument("names", nargs="*", help="recipe names (default: all in recipes/)")
    args = parser.parse_args(argv)
    paths = [RECIPES / f"{n}.yaml" for n in args.names] or sorted(RECIPES.glob("*.yaml"))
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            tiny = tiny_config_path(Path(tmp))
        rendered = {p.stem: render(p, tiny) for p in sorted(set(paths) | set(RECIPES.glob("*.yaml")))}
        for path in paths:
            old, new = path.read_text(), rendered[path.stem]
            if old == new:
                continue
            stale.append(path)
            if args.check:
                sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                           str(path), str(path) + " (generated)"))
            else:
                path.write_text(new)
                print(f"updated {path.relative_to(REPO)}")
    for doc in sorted(DOCS.glob("*.md")):
        old = doc.read_text()
        new = render_docs(old, rendered)
        if old == new:
            continue
        stale.append(doc)
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       str(doc), str(doc) + " (generated)"))
        else:
            doc.write_text(new)
            print(f"updated {doc.relative_to(REPO)}")
    if args.check and stale:
        print(f"{len(stale)} recipe header(s) stale: run python scripts/update_recipe_headers.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
