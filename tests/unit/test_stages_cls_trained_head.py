"""stages.cls.trained_head: a run without training needs a trained head, told from the files (no torch);
the cls stage's validate says what train refuses about the run folder."""

from __future__ import annotations

import json
import struct

import pytest


def _safetensors(path, names):
    """A real safetensors file (header + data) with float32 [1] tensors of these names."""
    header = {n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(names)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4 * len(names))


def _model(folder, names, arch="LlamaForCausalLM"):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [arch]}))
    if names is not None:
        _safetensors(folder / "model.safetensors", names)
    return str(folder)


def test_head_in_model_reads_weight_names_then_the_config(tmp_path):
    from llama_factory_ext.stages.cls.trained_head import head_in_model, safetensors_keys

    lm = _model(tmp_path / "lm", ["model.embed_tokens.weight", "lm_head.weight"])
    cls = _model(tmp_path / "cls", ["model.embed_tokens.weight", "score.weight"])
    bert = _model(tmp_path / "bert", ["bert.pooler.dense.weight", "classifier.weight"])
    no_head = _model(tmp_path / "renamed", ["model.norm.weight"], arch="LlamaForSequenceClassification")
    bin_only = _model(tmp_path / "bin", None, arch="BertForSequenceClassification")
    assert safetensors_keys(str(tmp_path / "cls" / "model.safetensors")) == ["model.embed_tokens.weight", "score.weight"]
    assert [head_in_model(m) for m in (lm, cls, bert, no_head, bin_only)] == [False, True, True, False, True]
    assert head_in_model("org/some-hub-id") is None and head_in_model(None) is None
    (tmp_path / "cls" / "model.safetensors").write_bytes(b"\xff" * 16)  # not a safetensors file: config decides
    assert head_in_model(cls) is False


def test_head_in_adapter(tmp_path):
    from llama_factory_ext.stages.cls.trained_head import head_in_adapter

    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text(json.dumps({"modules_to_save": ["score"]}))
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "adapter_config.json").write_text(json.dumps({"modules_to_save": None, "task_type": "CAUSAL_LM"}))
    head_file = tmp_path / "head_file"
    head_file.mkdir()
    (head_file / "adapter_config.json").write_text("{}")
    (head_file / "cls_head.safetensors").write_bytes(b"")
    assert [head_in_adapter(str(p)) for p in (run, sft, head_file)] == [True, False, True]
    assert head_in_adapter(str(tmp_path / "missing")) is None


def test_no_trained_head_is_refused_with_what_to_set(tmp_path):
    from llama_factory_ext.stages.cls.trained_head import trained_head_problem

    lm = _model(tmp_path / "lm", ["lm_head.weight"])
    problem = trained_head_problem(lm, None)
    assert problem.startswith(f"key `do_train`: false evaluates and predicts with a trained classification head, "
                              f"but model_name_or_path {lm} is not a classifier and no adapter_name_or_path is set")
    assert "set adapter_name_or_path to a trained cls run" in problem and "`do_train: true`" in problem
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "adapter_config.json").write_text(json.dumps({"modules_to_save": ["lm_head"]}))
    assert f"adapter_name_or_path {sft} holds no classification head" in trained_head_problem(lm, f"x,{sft}")
    cls = _model(tmp_path / "cls", ["score.weight"])
    assert trained_head_problem(cls, None) is None and trained_head_problem(lm, [str(tmp_path / "cls")]) is None
    assert trained_head_problem(cls, [str(sft)]) is None  # the base is a trained classifier
    assert trained_head_problem("org/hub-id", None) is None  # cannot tell from files: the loaded weights decide


@pytest.mark.parametrize("adapter", [2.5, 5, True, {"a": 1}])
def test_an_adapter_path_of_another_type_is_left_to_the_type_checks(tmp_path, adapter):
    """Found by the generative harness (recipe dicts on tiny_cls_multilabel / tiny_cls_score without do_train):
    `adapter_name_or_path: 2.5` raised TypeError ('float' object is not iterable) inside validate."""
    from llama_factory_ext.stages.cls.trained_head import trained_head_problem

    lm = _model(tmp_path / "lm", ["lm_head.weight"])
    assert "no adapter_name_or_path is set" in trained_head_problem(lm, adapter)


def test_cls_validate_says_what_train_refuses_about_the_folder(tmp_path):
    from llama_factory_ext.stages.cls import ClsStage

    lm = _model(tmp_path / "lm", ["lm_head.weight"])
    out = tmp_path / "run"
    out.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json", "cls_run.json"):
        (out / name).write_text("{}")
    stage = ClsStage()
    assert stage.folder_problems(None, {"model_name_or_path": lm})[0].startswith("key `do_train`: false")
    assert stage.folder_problems(None, {"model_name_or_path": lm, "export_dir": "x"}) == []
    train = {"model_name_or_path": lm, "do_train": True, "output_dir": str(out), "adapter_name_or_path": str(out)}
    assert stage.folder_problems(None, train) == []  # no overwrite: nothing removed
    (problem,) = stage.folder_problems(None, {**train, "overwrite_output_dir": True})
    assert problem.startswith(f"key `adapter_name_or_path`: {out} is output_dir itself")


@pytest.mark.parametrize("name", ["HEAD_CANDIDATES", "HEAD_FILE"])
def test_one_list_of_head_names(name):
    import ast
    from pathlib import Path

    from llama_factory_ext.stages.cls import trained_head

    src = Path(trained_head.__file__).with_name("trainer.py" if name == "HEAD_FILE" else "model.py").read_text()
    assigned = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == name for t in n.targets)]
    if name == "HEAD_FILE":  # trainer.py keeps its own constant: the same file name
        assert ast.literal_eval(assigned[0].value) == trained_head.HEAD_FILE
    else:
        assert not assigned and "from .trained_head import HEAD_CANDIDATES" in src
