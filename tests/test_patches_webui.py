"""The pack in LLaMA Board, built in-process as `llamafactory-cli webui` builds it (no browser; see
test_patches_webui_browser.py for the browser run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RECIPES, env

PROBE = Path(__file__).with_name("webui_probe.py")


def probe(tmp_path: Path, tiny_llama: Path, *extra, **extra_env) -> dict:
    cwd = tmp_path / f"ui{len(list(tmp_path.iterdir()))}"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, str(PROBE), str(tiny_llama), str(RECIPES / "data"), *map(str, extra)],
                          cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "stderr": proc.stderr}


@pytest.fixture(scope="module")
def cls_run_dir(tmp_path_factory) -> Path:
    """The files a finished cls run leaves (the browser test makes a real one)."""
    d = tmp_path_factory.mktemp("cls_run")
    (d / "cls_run.json").write_text(json.dumps({"num_eval": 3, "num_test": 3}))
    (d / "label_map.json").write_text(json.dumps({"labels": ["doc", "net"]}))
    (d / "eval_results.json").write_text(json.dumps({"eval_accuracy": 2 / 3, "eval_macro_f1": 0.5}))
    rows = [("doc", "doc"), ("net", "doc"), ("net", "net")]
    (d / "predictions.jsonl").write_text("".join(json.dumps({"gold": g, "predicted": p}) + "\n" for g, p in rows))
    return d


@pytest.fixture(scope="module")
def with_pack(tmp_path_factory, tiny_llama, cls_run_dir) -> dict:
    return probe(tmp_path_factory.mktemp("with_pack"), tiny_llama, cls_run_dir)


def test_stage_methods_and_keys_offered(with_pack):
    r = with_pack
    assert r["webui_active"] is True, r["webui_problems"]
    assert r["stages"]["Sequence Classification"] == "cls"
    assert list(r["stages"])[:6] == ["Supervised Fine-Tuning", "Reward Modeling", "PPO", "DPO", "KTO", "Pre-Training"]
    assert r["methods"][:4] == ["full", "freeze", "lora", "oft"]
    for m in ("rslora", "cls_head", "layerwise_lr", "rslora + cls_head", "rslora + cls_head + layerwise_lr"):
        assert m in r["methods"]
    assert "train_norms" in r["methods"]  # the example plugin's strategy (a third-party package)
    assert "rslora + cls_head" in r["peft"] and "full" not in r["peft"]
    for key in ("eval_dataset", "class_weights", "layerwise_lr_decay", "layerwise_lr_overrides", "memory_check",
                "train_norms_pattern", "target_gpu", "cls_problem_type", "cls_label_delimiter",
                "cls_allow_empty_labels", "cls_regression_loss"):
        assert f"lfx.lfx_{key}" in r["elem_ids"]
    # with the host's default stage and method only the keys for any run are shown
    from llama_factory_ext import plugins

    any_run = {f"lfx.lfx_{k}" for model in plugins.key_groups().values() for k in model.model_fields}
    assert {"lfx.lfx_memory_check", "lfx.lfx_target_gpu"} <= set(r["visible_at_start"]) <= any_run | {"lfx.lfx_target_gpu"}
    assert "llama-factory-ext" not in r["stderr"]  # no fail-open warning


def test_cls_args_get_lora_fields_and_pack_keys(with_pack):
    a = with_pack["cls_args"]
    assert a["stage"] == "cls" and a["finetuning_type"] == ["rslora", "cls_head"]
    assert a["lora_rank"] == 4 and a["lora_alpha"] == 16 and a["lora_target"] == "all"  # the host's LoRA fields
    assert a["class_weights"] == "balanced" and a["memory_check"] == "off"
    assert a["eval_dataset"] == "debian_sample_validation" and a["do_eval"] and a["do_predict"]
    assert a["output_dir"] == "saves/Custom/rslora+cls_head/run1"
    assert "use_rslora" not in a and "packing" in a and a["packing"] is False
    lw = with_pack["layerwise_args"]
    assert lw["finetuning_type"] == ["rslora", "cls_head", "layerwise_lr"]
    assert lw["layerwise_lr_decay"] == 0.8 and lw["layerwise_lr_overrides"] == {"score": 1.0e-3}
    assert "eval_dataset" not in lw and "do_eval" not in lw and "class_weights" not in lw


def test_bad_pack_value_is_one_clear_error(with_pack):
    err = with_pack["bad_value_error"]
    assert err and "key `class_weights`" in err and "Traceback" not in err


def test_preview_shows_yaml_and_estimate(with_pack):
    text = "\n".join(with_pack["cls_preview"])
    assert "llamafactory-cli train" in text
    assert "```yaml\n" in text and "finetuning_type:\n- rslora\n- cls_head" in text
    assert "Predicted peak GPU memory" in text


def test_estimate_follows_batch_size(with_pack):
    b2, b16 = with_pack["estimate_b2"], with_pack["estimate_b16"]
    assert "batch 2 x" in b2 and "batch 16 x" in b16 and "fits" in b2
    assert "activations" in b2 and b2 != b16


def test_estimate_follows_method_quantization_and_deepspeed(with_pack):
    def figure(text):
        return text.split("**")[3]  # the peak figure

    base = with_pack["estimate_lora"]  # same settings, method lora: same LoRA parameters
    assert "fits" in base and "lora," in base
    assert figure(with_pack["estimate_full"]) != figure(base) and "full," in with_pack["estimate_full"]
    assert figure(with_pack["estimate_q4"]) != figure(base)
    assert figure(with_pack["estimate_z3"]) != figure(base) and "2 GPUs" in with_pack["estimate_z3"]


def test_eval_tab_runs_cls_stage_and_chat_refuses(with_pack, cls_run_dir):
    ev = with_pack["eval_args"]
    assert ev["stage"] == "cls" and ev["finetuning_type"] == ["rslora", "cls_head"]
    assert ev["adapter_name_or_path"] == str(cls_run_dir)
    assert "predict_with_generate" not in ev and ev["do_eval"] and ev["do_predict"]
    assert ev["eval_dataset"] == "debian_sample_validation"
    assert ev["label_names"] == ["doc", "net"]  # the trained run's label set, in order (an eval-only cls run needs it)
    assert len(with_pack["chat"]) == 1 and "llamafactory-ext predict" in with_pack["chat"][0]


def test_results_show_metrics_and_confusion_matrix(with_pack):
    md = with_pack["results"]
    assert "| eval | 0.6667 | 0.5000 | 3 |" in md
    assert "| **net** | 1 | 1 |" in md and "| **doc** | 1 | 0 |" in md


def test_problem_type_is_a_choice_of_the_cls_stage():
    from llama_factory_ext import board

    field = next(f for f in board.pack_fields() if f.key == "cls_problem_type")
    assert field.widget == "choice" and field.choices == ["auto", "single_label", "multi_label", "regression"]
    assert board.applies(field, "cls", []) and not board.applies(field, "sft", [])


def test_results_table_per_problem_type(tmp_path):
    """The board's results box of a multi-label and a regression run: that type's metrics, not accuracy."""
    from llama_factory_ext import board

    multi = tmp_path / "multi"
    multi.mkdir()
    (multi / "cls_run.json").write_text(json.dumps({"problem_type": "multi_label", "num_eval": 60, "num_test": 60}))
    (multi / "eval_results.json").write_text(json.dumps({"eval_micro_f1": 0.61, "eval_macro_f1": 0.42,
                                                         "eval_samples_f1": 0.55, "eval_exact_match": 0.25}))
    (multi / "calibration.json").write_text(json.dumps({"temperature": 1.5, "eval": {
        "ece_before": 0.2, "ece_after": 0.05, "brier_before": 0.3, "brier_after": 0.25}}))
    md = board.results_markdown(str(multi))
    assert "Multi-label classification results" in md and "accuracy" not in md
    assert "| eval | 0.6100 | 0.4200 | 0.5500 | 0.2500 | 60 |" in md and "temperature 1.5000" in md
    score = tmp_path / "score"
    score.mkdir()
    (score / "cls_run.json").write_text(json.dumps({"problem_type": "regression", "num_eval": 60, "num_test": 60,
                                                    "score_mean": 4.25, "score_std": 0.625}))
    (score / "predict_results.json").write_text(json.dumps({"predict_mae": 0.31, "predict_rmse": 0.42,
                                                            "predict_pearson": 0.8, "predict_spearman": 0.79}))
    md = board.results_markdown(str(score))
    assert "Score regression results" in md and "| test (predict) | 0.3100 | 0.4200 | 0.8000 | 0.7900 | 60 |" in md
    assert "train mean 4.25, std 0.625" in md and "Calibration" not in md


def test_host_only_run_is_unchanged(with_pack, tmp_path, tiny_llama):
    """A host stage and method from the UI give the same training_args.yaml with and without the pack."""
    without = probe(tmp_path, tiny_llama, LLAMA_FACTORY_EXT_DISABLE="1")
    assert without["webui_active"] is None or without["webui_active"] is False
    assert "Sequence Classification" not in without["stages"]
    assert with_pack["host_only_args"] == without["host_only_args"]
    assert with_pack["host_only_saved"] == without["host_only_saved"]  # llamaboard_config.yaml too
    assert with_pack["host_only_args"]["finetuning_type"] == "lora"


def test_changed_web_ui_fails_open_with_one_warning(tmp_path, tiny_llama):
    r = probe(tmp_path, tiny_llama, "--break-runner")
    assert r["webui_active"] is False
    assert "Sequence Classification" not in r["stages"] and "rslora" not in r["methods"]
    assert r["stderr"].count("the web UI starts without the pack") == 1
    assert "Runner._parse_train_args changed" in r["stderr"]
    assert not any(i.startswith("lfx.") for i in r["elem_ids"])
