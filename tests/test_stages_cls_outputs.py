"""A new user's first hour: tiny model command, model card, pictures, one id form, quiet logs, warmup key."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import RECIPES, run_cli


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# ------------------------------------------------------------------ tiny model, recipes find it

def test_tiny_model_command_builds_once_and_copy_says_how(tmp_path):
    r = run_cli(["llamafactory-ext", "recipes", "copy", "tiny_cls", "run"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "build its model first: llamafactory-ext tiny-model run/tiny_llama" in r.stdout
    assert "/path/to" not in r.stdout
    r = run_cli(["llamafactory-ext", "tiny-model", "run/tiny_llama"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "tiny_llama" / "config.json").exists() and "built a tiny Llama" in r.stdout
    r = run_cli(["llamafactory-ext", "tiny-model", "run/tiny_llama"], tmp_path)
    assert "found a tiny Llama" in r.stdout
    r = run_cli(["llamafactory-ext", "recipes", "copy", "tiny_sft", "run"], tmp_path)
    assert r.returncode == 0 and "build its model first" not in r.stdout  # already there


# ------------------------------------------------------------------ warmup key


def test_fractional_warmup_steps_is_a_ratio_in_the_installed_transformers():
    """transformers 5.x reads warmup_steps < 1 as a ratio of the total steps (what the recipes rely on)."""
    from transformers import TrainingArguments

    from llama_factory_ext.stages.cls import warmup_problems

    args = TrainingArguments(output_dir="/tmp/unused", warmup_steps=0.1, report_to=[])
    assert args.get_warmup_steps(200) == 20
    assert warmup_problems({"warmup_steps": 0.1}) == []  # 5.x installed
    assert warmup_problems({"warmup_steps": 10}) == []


# ------------------------------------------------------------------ quiet helpers


# ------------------------------------------------------------------ pictures

def test_confusion_matrix_has_title_accuracy_and_a_row_normalised_view_for_many_labels(tmp_path):
    import numpy as np

    from llama_factory_ext.stages.cls.report import plot_confusion

    rng = np.random.default_rng(0)
    for k in (6, 40):
        m = rng.integers(0, 5, (k, k))
        m[np.arange(k), np.arange(k)] += 30
        plot_confusion(m, [f"label-{i}" for i in range(k)], str(tmp_path / f"cm{k}.png"), title="run")
    w6, h6 = _png_size(tmp_path / "cm6.png")
    w40, h40 = _png_size(tmp_path / "cm40.png")
    assert w6 < 1.3 * h6  # one panel
    assert w40 > 1.8 * h40  # counts and row-normalised side by side
    assert not list(tmp_path.glob("*.tmp*"))  # written under a temporary name, then renamed


def test_report_caption_states_rows_and_accuracy(tmp_path, monkeypatch):
    import matplotlib.figure
    import numpy as np

    from llama_factory_ext.stages.cls.report import plot_confusion

    titles = []
    orig = matplotlib.figure.Figure.suptitle
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", lambda self, t, **kw: titles.append(t) or orig(self, t, **kw))
    plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], str(tmp_path / "cm.png"), title="tiny_cls")
    assert titles == ["tiny_cls: confusion matrix, 8 rows, accuracy 87.5%"]


# ------------------------------------------------------------------ one id form


# ------------------------------------------------------------------ model card (unit)

def _fake_run(tmp_path: Path, adapter=True, template=None) -> tuple[Path, dict]:
    run = tmp_path / "run"
    run.mkdir()
    manifest = {"base_model": "meta-llama/Meta-Llama-3-8B", "adapter": adapter, "finetuning_type": "lora",
                "strategies": ["rslora", "cls_head"], "head_modules": ["score"], "cutoff_len": 384,
                "cls_template": template, "pad_token_id": 7, "datasets": {"train": ["tr"], "eval": ["va"], "test": []},
                "num_train": 50711, "num_eval": 600, "num_test": 600, "quantization": None}
    (run / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.8, "eval_macro_f1": 0.7, "epoch": 1}))
    (run / "predict_results.json").write_text(json.dumps({"predict_accuracy": 0.81, "predict_macro_f1": 0.72,
                                                          "predict_weighted_f1": 0.8}))
    return run, manifest


def test_model_card_has_hub_metadata_labels_sizes_metrics_and_versions(tmp_path):
    import yaml

    from llama_factory_ext.stages.cls.modelcard import write_model_card

    run, manifest = _fake_run(tmp_path, template="Classify: {text}")
    (run / "README.md").write_text("[More Information Needed]\n")  # PEFT's boilerplate
    path = write_model_card(str(run), manifest, ["admin", "devel", "doc"])
    text = Path(path).read_text()
    assert "[More Information Needed]" not in text and not list(run.glob("*.tmp"))
    head = yaml.safe_load(text.split("---")[1])
    assert head["base_model"] == "meta-llama/Meta-Llama-3-8B"
    assert head["library_name"] == "peft" and head["pipeline_tag"] == "text-classification"
    assert {"llama-factory-ext", "rslora", "cls_head", "lora"} <= set(head["tags"])
    assert "| 2 | doc |" in text
    assert "| train | 50,711 | tr |" in text and "| test | 600 | va |" in text  # test falls back to the eval split
    assert "| validation | 0.8000 | 0.7000 |  |" in text and "| test | 0.8100 | 0.7200 | 0.8000 |" in text
    assert "PeftModel.from_pretrained" in text and '"Classify: {text}".replace' in text
    assert re.search(r"\| llama-factory-ext \| \d", text) and re.search(r"\| transformers \| \d", text)


# ------------------------------------------------------------------ a real run: card, export, quiet log

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("first_hour")
    work = root / "recipes"
    shutil.copytree(RECIPES, work)
    shutil.copytree(tiny_llama, work / "tiny_llama")  # where the tiny recipes look: no override needed
    proc = run_cli(["llamafactory-cli", "train", work / "tiny_cls.yaml"], cwd=root)  # output_dir: runs/tiny_cls
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"root": root, "out": root / "runs" / "tiny_cls", "proc": proc}


@pytest.mark.e2e
def test_real_run_log_is_free_of_misleading_noise(tiny_run):
    log = tiny_run["proc"].stdout + tiny_run["proc"].stderr
    assert "gemm_4bit_forward" not in log
    assert "LOAD REPORT" not in log and "newly initialized" not in log
    assert "new classification head `score` for 6 labels" in log
    assert log.count("Model config LlamaConfig") <= 2  # was 8: the estimator's load and the run's own
    assert "warmup_ratio is deprecated" not in log


@pytest.mark.e2e
def test_real_run_card_and_its_peft_snippet_reproduce_the_predictions(tiny_run, tmp_path, capfd):
    import numpy as np
    import yaml

    out = tiny_run["out"]
    card = (out / "README.md").read_text()
    assert "[More Information Needed]" not in card
    head = yaml.safe_load(card.split("---")[1])
    assert head["library_name"] == "peft" and head["pipeline_tag"] == "text-classification"
    assert "| train | 240 | debian_sample_train |" in card
    predict = json.loads((out / "predict_results.json").read_text())
    assert f"| test | {predict['predict_accuracy']:.4f} |" in card
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    rows = _read_jsonl(tiny_run["root"] / "recipes" / "data" / "debian_sample_test.jsonl")[:3]
    saved = _read_jsonl(out / "predictions.jsonl")[:3]
    for row, pred in zip(rows, saved):
        scope: dict = {}
        exec(code.replace('text = "Library for parsing JSON documents"', f"text = {row['text']!r}"), scope)
        got = scope["probs"].numpy()
        want = np.array([pred["probabilities"][lab] for lab in scope["labels"]])
        np.testing.assert_allclose(got, want, atol=1e-5)
    said = capfd.readouterr()  # the base loads without a head before PeftModel adds the trained one: not a warning
    assert "MISSING" not in said.err + said.out and "newly initialized" not in said.err + said.out


@pytest.mark.e2e
def test_real_export_card_and_quiet_predict(tiny_run, tmp_path):
    import yaml

    out = tiny_run["out"]
    r = run_cli(["llamafactory-ext", "export", out, "--out", tmp_path / "merged"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    card = (tmp_path / "merged" / "README.md").read_text()
    head = yaml.safe_load(card.split("---")[1])
    assert head["library_name"] == "transformers" and "PeftModel" not in card
    assert "LOAD REPORT" not in r.stderr + r.stdout and "gemm_4bit_forward" not in r.stderr
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    scope: dict = {}
    exec(code, scope)
    assert scope["model"].config.id2label[0] == "doc"
    (tmp_path / "in.jsonl").write_text('{"text": "A puzzle game"}\n')
    r = run_cli(["llamafactory-ext", "predict", out, "--input", tmp_path / "in.jsonl"], tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == "in.jsonl:1"
    assert "LOAD REPORT" not in r.stderr and "MISSING" not in r.stderr and "gemm_4bit_forward" not in r.stderr
