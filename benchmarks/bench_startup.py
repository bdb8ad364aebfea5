"""Python start-up cost of the pack's .pth hook while llamafactory is not imported.

Runs `python -c pass` N times with the pack active and with LLAMA_FACTORY_EXT_DISABLE=1 (the .pth
line still runs but installs nothing), interleaved, and `python -X importtime` for the import itself.
Writes docs/bench_startup.md. Usage: python benchmarks/bench_startup.py [--runs 200]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one(env) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "bench_startup.md"))
    a = ap.parse_args()
    on = dict(os.environ)
    on.pop("LLAMA_FACTORY_EXT_DISABLE", None)
    off = dict(on, LLAMA_FACTORY_EXT_DISABLE="1")
    times = {"active": [], "disabled": [], "no .pth (python -S)": []}
    for _ in range(a.runs):
        times["active"].append(one(on))
        times["disabled"].append(one(off))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", "pass"], env=on, check=True)
        times["no .pth (python -S)"].append(time.perf_counter() - t)
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=on, capture_output=True, text=True).stderr
    rows = [l for l in imp.splitlines() if "llama_factory_ext" in l]
    self_us = sum(int(l.split("|")[1]) for l in rows) if rows else 0
    check = subprocess.run([sys.executable, "-c", "import sys; print('llamafactory' in sys.modules, 'torch' in sys.modules)"],
                           env=on, capture_output=True, text=True).stdout.strip()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    lines = [
        "# Start-up cost of the activation hook",
        "",
        f"`python benchmarks/bench_startup.py --runs {a.runs}` on this machine ({os.cpu_count()} cores), Python {sys.version.split()[0]},",
        "interpreter of the environment where llamafactory and llama-factory-ext are installed.",
        "",
        "| run of `python -c pass` | median ms | p90 ms |",
        "| --- | --- | --- |",
    ]
    for k, v in times.items():
        v = sorted(v)
        lines.append(f"| {k} | {med[k]:.2f} | {v[int(len(v) * 0.9)] * 1000:.2f} |")
    lines += [
        "",
        f"- Active minus disabled (median): **{med['active'] - med['disabled']:+.2f} ms** (target < 10 ms).",
        f"- `python -X importtime`: importing `llama_factory_ext` and `llama_factory_ext._activate` costs {self_us} us (self time).",
        f"- After start-up, `llamafactory` / `torch` imported: {check} (the hook imports nothing heavy).",
        "",
        "The `.pth` line imports a 60-line module that puts a one-shot finder on `sys.meta_path`;",
        "the patching code runs only when `llamafactory.train.tuner` is imported.",
    ]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
