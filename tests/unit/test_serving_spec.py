"""Which `llamafactory-cli api` configs the pack serves (cls runs, merged exports) and which go to the host untouched;
the serving limits read from the environment."""

from __future__ import annotations

import json

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.serving.batching import Limits
from llama_factory_ext.serving.spec import is_export, serve_spec, served_names


def _run(path):
    path.mkdir(parents=True)
    (path / "cls_run.json").write_text("{}")
    return str(path)


def _export(path, arch="LlamaForSequenceClassification"):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": [arch]}))
    return str(path)


def test_host_configs_go_to_the_host(tmp_path):
    lora = tmp_path / "lora"
    lora.mkdir()
    assert serve_spec({"model_name_or_path": "meta-llama/Meta-Llama-3-8B", "template": "llama3"}) is None
    assert serve_spec({"model_name_or_path": "base", "adapter_name_or_path": str(lora)}) is None
    assert serve_spec({"model_name_or_path": _export(tmp_path / "chat", "LlamaForCausalLM")}) is None


def test_cls_runs_comma_separated_or_listed_with_the_base(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    spec = serve_spec({"model_name_or_path": "/models/base", "adapter_name_or_path": f"{a}, {b}"})
    assert spec == ([a, b], "/models/base")
    assert serve_spec({"adapter_name_or_path": [a, b], "stage": "cls"}) == ([a, b], None)
    assert serve_spec({"model_name_or_path": a}) == ([a], None)


def test_a_merged_export_with_stage_cls(tmp_path):
    exp = _export(tmp_path / "merged")
    assert is_export(exp)
    assert serve_spec({"model_name_or_path": exp, "stage": "cls"}) == ([exp], None)


def test_mixed_or_missing_folders_are_refused_naming_the_key(tmp_path):
    a = _run(tmp_path / "a")
    lora = tmp_path / "lora"
    lora.mkdir()
    with pytest.raises(UserError, match="adapter_name_or_path.*start two servers"):
        serve_spec({"adapter_name_or_path": f"{a},{lora}"})
    with pytest.raises(UserError, match="model_name_or_path"):
        serve_spec({"model_name_or_path": "meta-llama/Meta-Llama-3-8B", "stage": "cls"})


def test_two_runs_with_one_folder_name_are_refused(tmp_path):
    a1, a2 = _run(tmp_path / "x" / "a"), _run(tmp_path / "y" / "a")
    assert served_names([a1, str(tmp_path / "b/")]) == ["a", "b"]
    with pytest.raises(UserError, match="same folder name `a`"):
        served_names([a1, a2])


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("LFX_SERVE_MAX_QUEUE", "8")
    monkeypatch.setenv("LFX_SERVE_WINDOW_MS", "0")
    assert Limits.from_env().threads == 0  # torch's default
    monkeypatch.setenv("LFX_SERVE_THREADS", "1")
    limits = Limits.from_env()
    assert limits.max_queue == 8 and limits.window_ms == 0 and limits.max_texts == 256 and limits.threads == 1
    for var in ("LFX_SERVE_MAX_TEXTS", "LFX_SERVE_THREADS"):
        for bad in ("lots", "-1", "0", "1.5"):
            monkeypatch.setenv(var, bad)
            with pytest.raises(UserError, match=var):
                Limits.from_env()
        monkeypatch.setenv(var, "2")
