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


def _metric_rows(run_dir: str, problem_type: str) -> list[tuple[str, dict]]:
    """(split, metrics) for the eval and test results found in the run folder (the metrics of its problem type)."""
    from .args import METRICS

    rows = []
    for split, name, prefix in (("validation", "eval_results.json", "eval_"), ("test", "predict_results.json", "predict_")):
        m = _read_json(os.path.join(run_dir, name))
        vals = {k[len(prefix):]: v for k, v in m.items() if k.startswith(prefix) and isinstance(v, (int, float))}
        if any(k in vals for k in METRICS[problem_type]):
            rows.append((split, vals))
    return rows


METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1", "micro_f1": "micro-F1",
                "samples_f1": "samples-F1", "exact_match": "exact match", "mae": "MAE", "rmse": "RMSE",
                "pearson": "Pearson", "spearman": "Spearman"}
HUB_METRICS = {"single_label": ["accuracy", "f1"], "multi_label": ["f1", "exact_match"],
               "regression": ["mae", "mse", "pearsonr", "spearmanr"]}  # ids of the hub's metrics
REPORTS = {"single_label": "Per-label precision, recall and F1 on the test split: `classification_report.md` (in the "
                           "training run folder), confusion matrix: `confusion_matrix.png`.",
           "multi_label": "Per-label threshold, precision, recall, F1 and support on the test split: "
                          "`classification_report.md` (in the training run folder).",
           "regression": "The test split's scores against the truth: `regression_report.md` and `predicted_vs_true.png` "
                         "(in the training run folder)."}
TITLES = {"single_label": "text classification, {k} labels", "multi_label": "multi-label text classification, {k} labels",
          "regression": "text regression (one score per text)"}


def _cell(text) -> str:
    return str(text).replace("|", chr(92) + "|")


def _labels_section(labels: list[str], manifest: dict, ptype: str) -> list[str]:
    if ptype == "regression":
        mean, std = manifest.get("score_mean", 0.0), manifest.get("score_std", 1.0)
        loss = {"huber": "Huber (delta 1 std)", "mse": "MSE"}.get(manifest.get("regression_loss") or "mse", "MSE")
        return ["## Score", "",
                f"The model has one output, trained with the {loss} loss on scores standardised with the train split's "
                f"mean and standard deviation. A score in the data's unit is `output * {std!r} + {mean!r}` "
                f"(std {std:.6g}, mean {mean:.6g}); `llamafactory-ext predict` and the code below return it."]
    if ptype == "multi_label":
        thresholds = manifest.get("thresholds") or [0.5] * len(labels)
        tuned = "tuned per label for F1 on the eval split" if manifest.get("calibrated_on") else \
            "0.5 (no eval split to tune them on)"
        lines = ["## Labels", "", "A text carries every label whose (calibrated) sigmoid probability is at or above the "
                 f"label's threshold ({tuned}); it may carry several or none.", "",
                 "| id | label | threshold |", "|---:|---|---:|"]
        return lines + [f"| {i} | {_cell(lab)} | {t:.4f} |" for i, (lab, t) in enumerate(zip(labels, thresholds))]
    return ["## Labels", "", "| id | label |", "|---:|---|"] + [f"| {i} | {_cell(lab)} |" for i, lab in enumerate(labels)]


def _calibration_section(manifest: dict, ptype: str, exported: bool) -> list[str]:
    if ptype == "regression":
        return []
    temperature = manifest.get("temperature", 1.0)
    fn = "sigmoid" if ptype == "multi_label" else "softmax"
    if not manifest.get("calibrated_on"):
        return ["## Calibration", "", f"No eval split: the probabilities are the plain {fn} of the logits "
                                      f"(temperature {temperature:g})."]
    lines = ["## Calibration", "",
             f"Probabilities are the {fn} of logits / T, T = {temperature:.4f} fitted on the eval split after training "
             f"(temperature scaling)"
             + ("; the exported head has T folded in (its plain " + fn + " is calibrated) and `config.lfx_temperature` "
                "keeps T (logits * T are the raw logits)." if exported else ".")]
    m = manifest.get("calibration_eval")
    if isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) for k in ("ece_before", "ece_after",
                                                                               "brier_before", "brier_after")):
        lines += ["", "| split | rows | ECE before | ECE after | Brier before | Brier after |",
                  "|---|---:|---:|---:|---:|---:|",
                  f"| validation | {m.get('rows', '')} | {m['ece_before']:.4f} | {m['ece_after']:.4f} | "
                  f"{m['brier_before']:.4f} | {m['brier_after']:.4f} |"]
    return lines


def render_card(run_dir: str, manifest: dict, labels: list[str], exported: bool = False,
                model_id: Optional[str] = None) -> str:
    """The card's text. ``run_dir``: where metrics and the classification report are read from."""
    import yaml

    ptype = manifest.get("problem_type") or "single_label"
    adapter = bool(manifest.get("adapter")) and not exported
    base = manifest.get("base_model")
    hub_base = hub_id(base)
    strategies = manifest.get("strategies") or []
    tags = ["llama-factory", "llama-factory-ext", "text-classification"]
    tags += {"multi_label": ["multi-label-classification"], "regression": ["regression"]}.get(ptype, [])
    tags += [s for s in strategies if s not in tags]
    if adapter:
        tags.append("lora")
    meta: dict = {}
    if hub_base:
        meta["base_model"] = hub_base
    meta["library_name"] = "peft" if adapter else "transformers"
    meta["pipeline_tag"] = "text-classification"
    meta["tags"] = tags
    meta["metrics"] = HUB_METRICS[ptype]
    versions = _versions()
    model_id = model_id or os.path.abspath(run_dir)
    title = os.path.basename(os.path.abspath(run_dir)) or "cls model"

    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {title}: {TITLES[ptype].format(k=len(labels))}", ""]
    kind = "regression" if ptype == "regression" else "classification"
    what = f"A merged, standalone sequence-{kind} model" if exported else (
        f"A LoRA adapter with a fully trained {kind} head" if adapter else f"A fine-tuned sequence-{kind} model")
    lines += [f"{what}, trained with [LLaMA-Factory](https://github.com/hiyouga/LLaMA-Factory) and "
              f"llama-factory-ext (`stage: cls`, `cls_problem_type: {ptype}`, {_method(manifest)}).", "",
              f"- base model: `{base}`" + ("" if hub_base else " (a local folder: set `base_model` in the YAML "
                                                                 "header to its hub id before pushing)"),
              f"- input: up to {manifest.get('cutoff_len')} tokens per text"
              + (", text pairs" if manifest.get("text_pair") else "")
              + (f"; texts are wrapped in the template `{manifest['cls_template']}`" if manifest.get("cls_template") else ""),
              ""]
    lines += _labels_section(labels, manifest, ptype)

    datasets = manifest.get("datasets") or {}
    lines += ["", "## Data", "", "| split | rows | datasets |", "|---|---:|---|"]
    for split, key, dkey in (("train", "num_train", "train"), ("validation", "num_eval", "eval"), ("test", "num_test", "test")):
        names = datasets.get(dkey) if isinstance(datasets, dict) else None
        if dkey == "test" and not names and isinstance(datasets, dict):
            names = datasets.get("eval")
        names = ", ".join(names) if isinstance(names, list) else (names or "")
        lines.append(f"| {split} | {manifest.get(key, 0):,} | {names} |")

    from .args import METRICS

    metric_rows = _metric_rows(run_dir, ptype)
    lines += ["", "## Results", ""]
    if metric_rows:
        shown = METRICS[ptype]
        lines += [f"| split | {' | '.join(METRIC_NAMES[x] for x in shown)} |", "|---|" + "---:|" * len(shown)]
        for split, m in metric_rows:
            cells = [f"{m[x]:.4f}" if isinstance(m.get(x), (int, float)) else "" for x in shown]
            lines.append(f"| {split} | {' | '.join(cells)} |")
        if ptype == "regression":
            lines += ["", "MAE and RMSE are in the score's unit."]
        report = "regression_report.md" if ptype == "regression" else "classification_report.md"
        if os.path.exists(os.path.join(run_dir, report)):
            lines += ["", REPORTS[ptype]]
    else:
        lines.append("No evaluation was run (`do_eval` / `do_predict` off).")
    calibration = _calibration_section(manifest, ptype, exported)
    if calibration:
        lines += [""] + calibration

    lines += ["", "## How to use", ""]
    template = manifest.get("cls_template")
    prep = f"text = {json.dumps(template)}.replace(\"{{text}}\", text)" if template else None
    cutoff = manifest.get("cutoff_len") or 512
    predict = _predict_lines(ptype, manifest, labels, exported)
    if adapter:
        from .args import HF_PROBLEM_TYPES

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
                  f"                                    problem_type={json.dumps(HF_PROBLEM_TYPES[ptype])},",
                  f"                                    pad_token_id={manifest.get('pad_token_id')})",
                  "hf_logging.set_verbosity_error()  # the base has no trained `score` head yet: PeftModel loads it next",
                  "model = AutoModelForSequenceClassification.from_pretrained(base_id, config=config, dtype=torch.float32)",
                  "hf_logging.set_verbosity_warning()",
                  "model = PeftModel.from_pretrained(model, model_id).eval()",
                  "tokenizer = AutoTokenizer.from_pretrained(model_id)", "",
                  *_logits_lines(prep, cutoff), *predict,
                  "```", "",
                  "With plain transformers: merge first (`llamafactory-ext export RUN_DIR --out merged/`); the merged "
                  "model's card shows its code.", "",
                  "With the pack: `llamafactory-ext predict RUN_DIR --input texts.jsonl`."]
    else:
        lines += ["With transformers:", "", "```python",
                  "import torch",
                  "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
                  f"model_id = {json.dumps(model_id)}  # or the hub id after pushing this folder",
                  "model = AutoModelForSequenceClassification.from_pretrained(model_id, dtype=torch.float32).eval()",
                  "tokenizer = AutoTokenizer.from_pretrained(model_id)", "",
                  *_logits_lines(prep, cutoff), *predict,
                  "```", ""]
        template_note = " (apply the template to each text first)" if template else ""
        if ptype == "regression":
            lines.append("`pipeline(\"text-classification\", model=model_id, function_to_apply=\"none\")` returns the "
                         f"standardised output as its `score`{template_note}: multiply by std and add the mean as above.")
        elif ptype == "multi_label":
            lines.append("`pipeline(\"text-classification\", model=model_id, top_k=None)` returns every label's calibrated "
                         f"probability{template_note}; keep the labels at or above their thresholds as above.")
        else:
            lines.append(f"Or `pipeline(\"text-classification\", model=model_id)`{template_note}.")
    lines = [ln for ln in lines if ln is not None]
    lines += ["", "## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {ver} |" for name, ver in versions.items()]
    return "\n".join(lines) + "\n"


def _logits_lines(prep: Optional[str], cutoff) -> list[str]:
    """The card's snippet lines that run the model on one text (``logits``: its raw outputs)."""
    return ["text = \"Library for parsing JSON documents\"",
            prep,
            f"batch = tokenizer([text], truncation=True, max_length={cutoff}, return_tensors=\"pt\")",
            "with torch.no_grad():",
            "    logits = model(**batch).logits[0]"]


def _predict_lines(ptype: str, manifest: dict, labels: list[str], exported: bool) -> list[str]:
    """The snippet's lines from ``logits`` to what ``llamafactory-ext predict`` writes: ``probs`` and the label
    (single_label), ``probs`` and the ``predicted`` labels over their thresholds (multi_label), the ``score`` in the
    data's unit (regression). An export has the temperature folded into its head and the rest in its config."""
    if ptype == "regression":
        if exported:
            source = "mean, std = model.config.lfx_score_mean, model.config.lfx_score_std  # of the train split's scores"
        else:
            source = f"mean, std = {manifest.get('score_mean', 0.0)!r}, {manifest.get('score_std', 1.0)!r}  # of the train split's scores"
        return [source, "score = float(logits[0]) * std + mean  # the output is the standardised score",
                "print(score)"]
    temperature = float(manifest.get("temperature", 1.0))
    fn = "sigmoid()" if ptype == "multi_label" else "softmax(-1)"
    if exported:
        calibrated = [f"probs = logits.{fn}  # calibrated: the temperature is folded into the head"]
        names = ["labels = [model.config.id2label[i] for i in range(model.config.num_labels)]"]
    else:
        calibrated = [f"temperature = {temperature!r}  # fitted on the eval split; 1.0 gives the raw probabilities",
                      f"probs = logits.div(temperature).{fn}"]
        names = []
    if ptype == "multi_label":
        if exported:
            thresholds = "thresholds = [model.config.lfx_thresholds[label] for label in labels]"
        else:
            thresholds = f"thresholds = {json.dumps(manifest.get('thresholds') or [0.5] * len(labels))}"
        return names + calibrated + [
            thresholds + "  # per label, tuned on the eval split",
            "predicted = [label for label, p, t in zip(labels, probs.tolist(), thresholds) if p >= t]",
            "print(predicted, dict(zip(labels, probs.tolist())))"]
    return names + calibrated + ["print(labels[int(probs.argmax())], float(probs.max()))"]


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
