"""Cold `llamafactory-ext estimate` command timings (a new process each run), written to docs/estimate_cli_bench.md and
docs/estimate_cli_bench_<host>.json (one JSON per host venv; the page shows every host measured).

For each recipe: the first run with an empty cache on this host (a tested host: the formula path with the shipped
snapshot of the host's argument names), the first run with an empty cache as on a host the pack ships no snapshot
for (the meta-device build with the host's code, which then caches the names), and ``--runs`` runs with a filled
cache. Wall and CPU seconds (user + sys of the child) per run, with the machine's load average, since wall time on a
shared machine says more about the neighbours than about the command.

    .venv/bin/python benchmarks/bench_estimate_cli.py [--runs 3] [--out docs]
    .venv-head/bin/python benchmarks/bench_estimate_cli.py
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


NO_SNAPSHOT = ("import sys, tempfile; from llama_factory_ext.host import keys; "
               "keys.SNAPSHOTS = keys.Path(tempfile.mkdtemp()); from llama_factory_ext.cli import main; "
               "sys.exit(main(sys.argv[1:]))")


def host_label() -> str:
    from importlib.metadata import version

    return f"llamafactory {version('llamafactory')}, transformers {version('transformers')}"


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
            argv = ["estimate", str(REPO / "recipes" / name), "--gpu", "H100"]
            first = timed([exe, *argv], {**env, "XDG_CACHE_HOME": tempfile.mkdtemp(dir=cache)}, REPO)
            untested = timed([sys.executable, "-c", NO_SNAPSHOT, *argv],
                             {**env, "XDG_CACHE_HOME": tempfile.mkdtemp(dir=cache)}, REPO)
            timed([exe, *argv], env, REPO)  # fill the shared cache for this recipe
            cached = [timed([exe, *argv], env, REPO) for _ in range(args.runs)]
            row = {"recipe": name, "first_run": first, "first_run_no_snapshot": untested, "cached_runs": cached,
                   "cached_wall_median_s": statistics.median(c["wall_s"] for c in cached),
                   "cached_cpu_median_s": statistics.median(c["cpu_s"] for c in cached)}
            rows.append(row)
            print(f"{name}: first run {first['wall_s']} s wall / {first['cpu_s']} s CPU (load {first['load_avg_1min']}); "
                  f"no snapshot {untested['wall_s']} s / {untested['cpu_s']} s; "
                  f"cached: median {row['cached_wall_median_s']} s wall / {row['cached_cpu_median_s']} s CPU", flush=True)
    from importlib.metadata import version

    tag = "head" if "dev" in version("llamafactory") else "release"
    out = {"host": host_label(), "python_startup": python, "runs": args.runs, "cpu_count": os.cpu_count(),
           "rows": rows}
    from llama_factory_ext.safeio import atomic_write

    folder = Path(args.out)  # atomic_write creates it when it does not exist yet
    with atomic_write(folder / f"estimate_cli_bench_{tag}.json") as f:
        f.write(json.dumps(out, indent=1) + "\n")
    write_page(folder)


def write_page(out: Path) -> None:
    results = [json.loads(f.read_text()) for f in sorted(out.glob("estimate_cli_bench_*.json"))]
    python = results[0]["python_startup"]
    lines = [
        "# `llamafactory-ext estimate` cold command (benchmarks/bench_estimate_cli.py)",
        "",
        f"Each run is a new process (`llamafactory-ext estimate RECIPE --gpu H100`), {results[0]['cpu_count']} CPU "
        "cores, shared machine: wall time depends on the neighbours (load average given), CPU seconds (user + sys) "
        f"much less. Python start alone: {python['wall_s']} s wall / {python['cpu_s']} s CPU.",
        "",
        "- **first run**: empty cache on a tested host: the formula path with the shipped snapshot of the host's "
        "argument names (`host/snapshots/`); a cls recipe also reads its data once for the label count.",
        "- **no snapshot**: empty cache on a host the pack ships no snapshot for (another LLaMA-Factory or "
        "transformers version, or an edited source install): the meta-device build with the host's code, which "
        "caches the names for the next run.",
        "- **cached**: later runs.",
    ]
    for res in results:
        lines += ["", f"## {res['host']}", "",
                  "| recipe | first run: wall / CPU s, load | no snapshot: wall / CPU s, load | cached: median wall / CPU s |",
                  "|---|---|---|---|"]
        for r in res["rows"]:
            f, u = r["first_run"], r["first_run_no_snapshot"]
            lines.append(f"| {r['recipe']} | {f['wall_s']} / {f['cpu_s']}, load {f['load_avg_1min']} | "
                         f"{u['wall_s']} / {u['cpu_s']}, load {u['load_avg_1min']} | "
                         f"{r['cached_wall_median_s']} / {r['cached_cpu_median_s']} (n={len(r['cached_runs'])}) |")
        said = sorted({s for r in res["rows"] for k in ("first_run", "first_run_no_snapshot") for s in r[k]["said"]})
        lines += ["", "What the runs said on stderr:", *[f"- {s}" for s in said]]
    from llama_factory_ext.safeio import atomic_write

    with atomic_write(out / "estimate_cli_bench.md") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
