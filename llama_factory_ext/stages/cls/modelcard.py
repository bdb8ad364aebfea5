"""README.md model card of a cls run folder or export, in the Hugging Face convention (YAML metadata + text)."""

from __future__ import annotations

import json
import os
from typing import Optional

CARD = "README.md"


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("llama-factory-ext", "llamafactory", "transformers", "peft", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def hub_id(base_model: Optional[str]) -> Optional[str]:
    """``base_model`` for the YAML header: a hub id, or None for a local folder (the hub only takes ids)."""
    if not base_model or os.path.isabs(base_model) or os.path.exists(base_model) or base_model.startswith("."):
        return None
    return base_model if base_model.count("/") == 1 else None


def _method(manifest: dict) -> str:
    strategies = manifest.get("strategies") or []
    ftype = manifest.get("finetuning_type") or "?"
    text = f"`finetuning_type: {ftype}`"
    if strategies:
        text += f" with {', '.join(f'`{s}`' for s in strategies)}"
    if manifest.get("quantization"):
        bits = "4-bit" if manifest["quantization"].get("load_in_4bit") else "8-bit"
        text += f", on a {bits} bitsandbytes base (QLoRA)"
    return text


def _metric_rows(run_dir: str) -> list[tuple[str, dict]]:
    """(split, metrics) for the eval and test results found in the run folder."""
    rows = []
    for split, name, prefix in (("validation", "eval_results.json", "eval_"), ("test", "predict_results.json", "predict_")):
        m = _read_json(os.path.join(run_dir, name))
        vals = {k[len(prefix):]: v for k, v in m.items() if k.startswith(prefix) and isinstance(v, (int, float))}
        if any(k in vals for k in ("accuracy", "macro_f1")):
            rows.append((split, vals))
    return rows


def render_card(run_dir: str, manifest: dict, labels: list[str], exported: bool = False,
                model_id: Optional[str] = None) -> str:
    """The card's text. ``run_dir``: where metrics and the classification report are read from."""
    import yaml

    adapter = bool(manifest.get("adapter")) and not exported
    base = manifest.get("base_model")
    hub_base = hub_id(base)
    strategies = manifest.get("strategies") or []
    tags = ["llama-factory", "llama-factory-ext", "text-classification"]
    tags += [s for s in strategies if s not in tags]
    if adapter:
        tags.append("lora")
    meta: dict = {}
    if hub_base:
        meta["base_model"] = hub_base
    meta["library_name"] = "peft" if adapter else "transformers"
    meta["pipeline_tag"] = "text-classification"
    meta["tags"] = tags
    meta["metrics"] = ["accuracy", "f1"]
    versions = _versions()
    model_id = model_id or os.path.abspath(run_dir)
    k = len(labels)
    title = os.path.basename(os.path.abspath(run_dir)) or "cls model"

    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {title}: text classification, {k} labels", ""]
    what = "A merged, standalone sequence-classification model" if exported else (
        "A LoRA adapter with a fully trained classification head" if adapter else "A fine-tuned sequence-classification model")
    lines += [f"{what}, trained with [LLaMA-Factory](https://github.com/hiyouga/LLaMA-Factory) and "
              f"llama-factory-ext (`stage: cls`, {_method(manifest)}).", "",
              f"- base model: `{base}`" + ("" if hub_base else " (a local folder: set `base_model` in the YAML "
                                                                 "header to its hub id before pushing)"),
              f"- input: up to {manifest.get('cutoff_len')} tokens per text"
              + (", text pairs" if manifest.get("text_pair") else "")
              + (f"; texts are wrapped in the template `{manifest['cls_template']}`" if manifest.get("cls_template") else ""),
              ""]

    lines += ["## Labels", "", "| id | label |", "|---:|---|"]
    lines += [f"| {i} | {str(lab).replace('|', chr(92) + '|')} |" for i, lab in enumerate(labels)]

    datasets = manifest.get("datasets") or {}
    lines += ["", "## Data", "", "| split | rows | datasets |", "|---|---:|---|"]
    for split, key, dkey in (("train", "num_train", "train"), ("validation", "num_eval", "eval"), ("test", "num_test", "test")):
        names = datasets.get(dkey) if isinstance(datasets, dict) else None
        if dkey == "test" and not names and isinstance(datasets, dict):
            names = datasets.get("eval")
        names = ", ".join(names) if isinstance(names, list) else (names or "")
        lines.append(f"| {split} | {manifest.get(key, 0):,} | {names} |")

    metric_rows = _metric_rows(run_dir)
    lines += ["", "## Results", ""]
    if metric_rows:
        lines += ["| split | accuracy | macro-F1 | weighted-F1 |", "|---|---:|---:|---:|"]
        for split, m in metric_rows:
            cells = [f"{m[x]:.4f}" if isinstance(m.get(x), (int, float)) else "" for x in ("accuracy", "macro_f1", "weighted_f1")]
            lines.append(f"| {split} | {' | '.join(cells)} |")
        if os.path.exists(os.path.join(run_dir, "classification_report.md")):
            lines += ["", "Per-label precision, recall and F1 on the test split: `classification_report.md` "
                      "(in the training run folder), confusion matrix: `confusion_matrix.png`."]
    else:
        lines.append("No evaluation was run (`do_eval` / `do_predict` off).")

    lines += ["", "## How to use", ""]
    template = manifest.get("cls_template")
    prep = f"text = {json.dumps(template)}.replace(\"{{text}}\", text)" if template else None
    cutoff = manifest.get("cutoff_len") or 512
    if adapter:
        lines += ["With PEFT (this folder holds the adapter; the head is in `modules_to_save`):", "", "```python",
                  "import torch",
                  "from peft import PeftModel",
                  "from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer",
                  "from transformers.utils import logging as hf_logging", "",
                  f"model_id = {json.dumps(model_id)}  # or the hub id after pushing this folder",
                  f"base_id = {json.dumps(hub_base or base)}",
                  f"labels = {json.dumps(labels, ensure_ascii=False)}",
                  "config = AutoConfig.from_pretrained(base_id, num_labels=len(labels), id2label=dict(enumerate(labels)),",
                  "                                    label2id={l: i for i, l in enumerate(labels)},",
                  f"                                    pad_token_id={manifest.get('pad_token_id')})",
                  "hf_logging.set_verbosity_error()  # the base has no trained `score` head yet: PeftModel loads it next",
                  "model = AutoModelForSequenceClassification.from_pretrained(base_id, config=config, dtype=torch.float32)",
                  "hf_logging.set_verbosity_warning()",
                  "model = PeftModel.from_pretrained(model, model_id).eval()",
                  "tokenizer = AutoTokenizer.from_pretrained(model_id)", "",
                  *_calibrated(_classify_lines(prep, cutoff, "labels"), manifest.get("temperature", 1.0)),
                  "```", "",
                  "With plain transformers: merge first (`llamafactory-ext export RUN_DIR --out merged/`), then "
                  "`pipeline(\"text-classification\", model=\"merged/\")`.", "",
                  "With the pack: `llamafactory-ext predict RUN_DIR --input texts.jsonl`."]
    else:
        lines += ["With transformers:", "", "```python",
                  "import torch",
                  "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
                  f"model_id = {json.dumps(model_id)}  # or the hub id after pushing this folder",
                  "model = AutoModelForSequenceClassification.from_pretrained(model_id, dtype=torch.float32).eval()",
                  "tokenizer = AutoTokenizer.from_pretrained(model_id)", "",
                  *_classify_lines(prep, cutoff, "model.config.id2label"),
                  "```", "",
                  "Or `pipeline(\"text-classification\", model=model_id)`"
                  + (" (apply the template to each text first)." if template else ".")]
    lines = [ln for ln in lines if ln is not None]
    lines += ["", "## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {ver} |" for name, ver in versions.items()]
    return "\n".join(lines) + "\n"


def _calibrated(lines: list[str], temperature) -> list[str]:
    """The snippet with the run's temperature applied to the logits, as in predictions.jsonl (an export has it
    folded into its head)."""
    if not isinstance(temperature, (int, float)) or temperature == 1.0:
        return lines
    return [ln.replace("logits.softmax(-1)", f"logits.div({temperature!r}).softmax(-1)") if ln else ln
            for ln in lines]


def _classify_lines(prep: str, cutoff, names: str) -> list[str]:
    """The card's snippet lines that classify one text and print its label (``names``: how the labels are indexed)."""
    return ["text = \"Library for parsing JSON documents\"",
            prep,
            f"batch = tokenizer([text], truncation=True, max_length={cutoff}, return_tensors=\"pt\")",
            "with torch.no_grad():",
            "    probs = model(**batch).logits.softmax(-1)[0]",
            f"print({names}[int(probs.argmax())], float(probs.max()))"]


def write_model_card(out_dir: str, manifest: dict, labels: list[str], run_dir: Optional[str] = None,
                     exported: bool = False, model_id: Optional[str] = None) -> str:
    """Write ``out_dir/README.md`` atomically (temp name + rename); returns its path. ``model_id``: the folder the
    card's code loads from, when ``out_dir`` is a temporary name for it."""
    text = render_card(run_dir or out_dir, manifest, labels, exported=exported,
                       model_id=os.path.abspath(model_id or out_dir))
    path = os.path.join(out_dir, CARD)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
