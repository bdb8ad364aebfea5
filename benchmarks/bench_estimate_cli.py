"""Cold `llamafactory-ext estimate` command timings (a new process each run), written to docs/estimate_cli_bench.md/json.

For each recipe: the first run with an empty cache (the meta-device build with the host's code; it caches the host's
argument names and the cls label count), then ``--runs`` runs with that cache (the formula path). Wall and CPU
seconds (user + sys of the child) per run, with the machine's load average, since wall time on a shared machine
says more about the neighbours than about the command.

    python benchmarks/bench_estimate_cli.py [--runs 3] [--out docs]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("llama3_cls.yaml", "llama3_sft.yaml", "llama3_sft_qlora.yaml")


def timed(cmd: list, env: dict, cwd: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=str(cwd), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "load_avg_1min": round(os.getloadavg()[0], 2),
            "said": [ln for ln in r.stderr.splitlines() if ln.startswith("llamafactory-ext estimate:")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "docs"))
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "llamafactory-ext")
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1", "CUDA_VISIBLE_DEVICES": ""}
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**base_env, "XDG_CACHE_HOME": cache}
        python = timed([sys.executable, "-c", "pass"], env, REPO)
        for name in RECIPES:
            cmd = [exe, "estimate", str(REPO / "recipes" / name), "--gpu", "H100"]
            first = timed(cmd, {**env, "XDG_CACHE_HOME": tempfile.mkdtemp(dir=cache)}, REPO)
            timed(cmd, env, REPO)  # fill the shared cache for this recipe
            cached = [timed(cmd, env, REPO) for _ in range(args.runs)]
            row = {"recipe": name, "first_run": first, "cached_runs": cached,
                   "cached_wall_median_s": statistics.median(c["wall_s"] for c in cached),
                   "cached_cpu_median_s": statistics.median(c["cpu_s"] for c in cached)}
            rows.append(row)
            print(f"{name}: first run {first['wall_s']} s wall / {first['cpu_s']} s CPU (load {first['load_avg_1min']}); "
                  f"cached: median {row['cached_wall_median_s']} s wall / {row['cached_cpu_median_s']} s CPU", flush=True)
    out = {"python_startup": python, "runs": args.runs, "cpu_count": os.cpu_count(), "rows": rows}
    Path(args.out, "estimate_cli_bench.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [
        "# `llamafactory-ext estimate` cold command (benchmarks/bench_estimate_cli.py)",
        "",
        f"Each run is a new process (`llamafactory-ext estimate RECIPE --gpu H100`), {os.cpu_count()} CPU cores, "
        "shared machine: wall time depends on the neighbours (load average given), CPU seconds (user + sys) much "
        f"less. Python start alone: {python['wall_s']} s wall / {python['cpu_s']} s CPU.",
        "",
        "| recipe | first run (empty cache): wall / CPU s, load | cached runs: median wall / CPU s |",
        "|---|---|---|",
    ]
    for r in rows:
        f = r["first_run"]
        lines.append(f"| {r['recipe']} | {f['wall_s']} / {f['cpu_s']}, load {f['load_avg_1min']} | "
                     f"{r['cached_wall_median_s']} / {r['cached_cpu_median_s']} (n={len(r['cached_runs'])}) |")
    lines += ["", "The first run builds the model on the meta device with the host's code and says so on stderr:",
              *[f"- {s}" for s in rows[0]["first_run"]["said"]],
              "", "Later runs take the formula path (estimator/fast.py; equal to the meta-device build, tested)."]
    Path(args.out, "estimate_cli_bench.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
