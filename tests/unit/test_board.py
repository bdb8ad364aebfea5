"""board: what the pack offers in LLaMA Board (stages, methods, its keys) and how the UI's values become recipe keys,
with the built-in plugins only (no gradio, no host)."""

from __future__ import annotations

import pytest

from llama_factory_ext import board
from llama_factory_ext.api import UserError


def test_stage_and_method_choices_of_the_built_in_plugins():
    assert board.stage_choices() == {"Sequence Classification": "cls"}
    assert board.method_choices() == ["rslora", "cls_head", "layerwise_lr", "rslora + cls_head",
                                      "rslora + cls_head + layerwise_lr"]


@pytest.mark.parametrize("value, names, base, recipe", [
    ("rslora + cls_head", ["rslora", "cls_head"], "lora", ["rslora", "cls_head"]),
    ("full+layerwise_lr", ["full", "layerwise_lr"], "full", ["full", "layerwise_lr"]),
    (["freeze", "layerwise_lr"], ["freeze", "layerwise_lr"], "freeze", ["freeze", "layerwise_lr"]),
    ("layerwise_lr", ["layerwise_lr"], "lora", "layerwise_lr"),  # no base of its own: the host's default
    ("oft", ["oft"], "oft", "oft"),
    (None, [], "lora", []),
])
def test_method_names_base_and_recipe_value(value, names, base, recipe):
    assert board.method_names(value) == names
    assert board.base_method(value) == base
    assert board.recipe_method(value) == recipe


def test_pack_or_host_method():
    assert board.is_pack_method("rslora") and board.is_pack_method("lora + layerwise_lr")
    assert not board.is_pack_method("lora") and not board.is_pack_method("full") and not board.is_pack_method(None)
    assert board.uses_pack("cls", "lora", {}) and board.uses_pack("sft", "rslora", {})
    assert board.uses_pack("sft", "lora", {"memory_check": "off"})
    assert not board.uses_pack("sft", "lora", {})


def _fields():
    return {f.key: f for f in board.pack_fields()}


def test_pack_fields_name_their_owner_widget_and_default():
    fields = _fields()
    got = {k: (f.kind, f.owner, f.widget, f.default) for k, f in fields.items()}
    assert got["eval_dataset"] == ("host", "cls", "text", None)  # a host key the cls stage offers
    assert got["label_names"] == ("stage", "cls", "text", None)
    assert got["layerwise_lr_decay"] == ("strategy", "layerwise_lr", "text", 1.0)
    assert got["training_guard"] == ("keys", "training_guard", "check", True)
    assert got["memory_check"] == ("keys", "estimator", "choice", "warn")
    assert fields["memory_check"].choices == ["error", "warn", "off"]
    assert fields["eval_dataset"].help  # the stage's own words
    assert fields["layerwise_lr_decay"].elem_name == "lfx_layerwise_lr_decay"
    assert fields["layerwise_lr_decay"].label == "layerwise_lr_decay (with layerwise_lr)"
    assert fields["label_names"].label == "label_names (stage cls)"
    assert fields["training_guard"].label == "training_guard (any run)"


def test_a_key_applies_to_its_stage_or_strategy_only():
    fields = _fields()
    assert board.applies(fields["label_names"], "cls", []) and not board.applies(fields["label_names"], "sft", [])
    assert board.applies(fields["eval_dataset"], "cls", []) and not board.applies(fields["eval_dataset"], None, [])
    assert board.applies(fields["layerwise_lr_decay"], "sft", ["lora", "layerwise_lr"])
    assert not board.applies(fields["layerwise_lr_decay"], "cls", ["rslora", "cls_head"])
    assert board.applies(fields["memory_check"], None, [])


def test_pack_values_types_the_ui_strings_and_leaves_out_what_does_not_apply():
    raw = {"lfx_label_names": "[games, net]", "lfx_class_weights": "balanced", "lfx_cls_length_buckets": "8",
           "lfx_layerwise_lr_decay": "0.8", "lfx_layerwise_lr_overrides": "{score: 1.0e-3}",
           "lfx_memory_check": "off", "lfx_training_guard": False, "lfx_training_guard_loss_factor": " ",
           "lfx_cls_template": None, "lfx_not_a_pack_key": "1"}
    got = board.pack_values(board.pack_fields(), raw, "cls", ["rslora", "cls_head"])
    assert got == {"label_names": ["games", "net"], "class_weights": "balanced", "cls_length_buckets": 8,
                   "memory_check": "off", "training_guard": False}  # off stays the choice, not YAML's false
    got = board.pack_values(board.pack_fields(), raw, "sft", ["lora", "layerwise_lr"])
    assert got == {"layerwise_lr_decay": 0.8, "layerwise_lr_overrides": {"score": 1.0e-3}, "memory_check": "off",
                   "training_guard": False}


def test_pack_values_leave_defaults_out():
    raw = {"lfx_memory_check": "warn", "lfx_training_guard": True, "lfx_layerwise_lr_decay": ""}
    assert board.pack_values(board.pack_fields(), raw, "sft", ["layerwise_lr"]) == {}


def test_numbers_in_the_pack_section_read_as_the_recipe_reader_reads_them():
    """``5e-5`` is a float in a recipe, on the command line (OmegaConf) and in the pack section alike."""
    raw = {"lfx_training_guard_grad_norm": "5e4", "lfx_layerwise_lr_overrides": "{score: 5e-5, embed: 2.0e-4}"}
    got = board.pack_values(board.pack_fields(), raw, "sft", ["layerwise_lr"])
    assert got == {"training_guard_grad_norm": 5e4, "layerwise_lr_overrides": {"score": 5e-5, "embed": 2.0e-4}}
    assert type(got["training_guard_grad_norm"]) is float


def test_a_template_is_kept_as_typed():
    """``Classify: {text}`` is a YAML mapping; typed into the string key ``cls_template`` it stays the template."""
    raw = {"lfx_cls_template": "Classify: {text}", "lfx_test_dataset": "debian_sample_test"}
    got = board.pack_values(board.pack_fields(), raw, "cls", ["cls_head"])
    assert got == {"cls_template": "Classify: {text}", "test_dataset": "debian_sample_test"}


def test_bad_values_name_every_key():
    raw = {"lfx_class_weights": "[1, 2", "lfx_label_names": "{a: [b"}
    with pytest.raises(UserError) as err:
        board.pack_values(board.pack_fields(), raw, "cls", ["cls_head"])
    assert len(err.value.problems) == 2
    for key in ("class_weights", "label_names"):
        said = [p for p in err.value.problems if p.startswith(f"key `{key}`: cannot read '{raw['lfx_' + key]}' (")]
        assert len(said) == 1, err.value.problems


def test_finish_train_args_writes_the_recipe_method_and_pack_keys():
    args = board.finish_train_args({"stage": "sft", "finetuning_type": "lora", "lora_rank": 8},
                                   {"layerwise_lr_decay": 0.9}, "lora + layerwise_lr")
    assert args == {"stage": "sft", "finetuning_type": ["lora", "layerwise_lr"], "lora_rank": 8,
                    "layerwise_lr_decay": 0.9}


def test_run_stage_from_a_one_stage_strategy_or_the_runs_training_args(tmp_path):
    assert board.run_stage("rslora + cls_head", []).name == "cls"
    assert board.run_stage("lora", [str(tmp_path)]) is None
    (tmp_path / "training_args.yaml").write_text("stage: cls\nfinetuning_type: lora\n")
    assert board.run_stage("lora", ["", str(tmp_path)]).name == "cls"
    (tmp_path / "training_args.yaml").write_text("stage: sft\n")
    assert board.run_stage("lora", [str(tmp_path)]) is None


def test_results_of_an_interrupted_or_failed_run_say_what_happened_and_how_to_resume(tmp_path):
    import json

    from llama_factory_ext.runfolder import STATUS, owner_record

    run = tmp_path / "run"
    for step, weights in ((10, True), (20, False)):  # 20: killed while saving
        ckpt = run / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "trainer_state.json").write_text("{}")
        if weights:
            (ckpt / "adapter_model.safetensors").write_bytes(b"x")
    gone = {**owner_record(), "pid_start": "1"}  # this pid, another process's start: that process is gone
    (run / STATUS).write_text(json.dumps({"status": "running", **gone}))
    before = sorted(p.name for p in run.iterdir())
    md = board.results_markdown(str(run))
    assert md.startswith("### Run not finished") and "holds an interrupted run" in md
    assert "resumes from `checkpoint-10`" in md and "checkpoint-20" not in md
    assert sorted(p.name for p in run.iterdir()) == before  # read only: nothing renamed

    for name in ("checkpoint-10", "checkpoint-20"):
        for f in (run / name).iterdir():
            f.unlink()
        (run / name).rmdir()
    assert "No complete checkpoint was saved: starting the same run again trains from the beginning" in \
        board.results_markdown(str(run))

    (run / STATUS).write_text(json.dumps({"status": "failed", "reason": "CUDA out of memory", **gone}))
    md = board.results_markdown(str(run))
    assert "holds a failed run" in md and "CUDA out of memory" in md and "checkpoint" not in md

    (run / STATUS).write_text(json.dumps({"status": "finished", **gone}))
    assert board.unfinished_markdown(str(run)) == ""
    assert board.unfinished_markdown(str(tmp_path / "nowhere")) == ""
