"""recipe.compose through recipe.prepare: key ownership, composition of host methods and strategies (which
combinations compose, docs/strategies.md; refused ones at parse time), did-you-mean, all problems at once."""

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.recipe import prepare
from llama_factory_ext.recipe.compose import parse_finetuning_type

HOST_KEYS = {"stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_target", "use_rslora", "learning_rate",
             "model_name_or_path", "use_dora"}


def test_spellings_of_a_composition():
    assert parse_finetuning_type("rslora+cls_head") == ["rslora", "cls_head"]
    assert parse_finetuning_type(["rslora", "cls_head"]) == ["rslora", "cls_head"]
    assert parse_finetuning_type("lora") == ["lora"]
    assert parse_finetuning_type(None) == []


def test_host_values_pass_through_unchanged():
    raw = {"stage": "sft", "finetuning_type": "freeze", "learning_rate": 1e-4}
    run = prepare(raw, host_keys=HOST_KEYS)
    assert run.host_args == raw and run.strategies == [] and run.stage is None
    assert not run.strategies and run.stage is None


def test_rslora_rewrites_host_args():
    run = prepare({"finetuning_type": "rslora", "lora_rank": 16}, host_keys=HOST_KEYS)
    assert run.host_args == {"finetuning_type": "lora", "lora_rank": 16, "use_rslora": True,
                             "lora_target": "all", "lora_alpha": 32}
    run = prepare({"finetuning_type": ["rslora"], "lora_alpha": 8, "lora_target": "q_proj"}, host_keys=HOST_KEYS)
    assert run.host_args["lora_alpha"] == 8 and run.host_args["lora_target"] == "q_proj"


def test_every_problem_reported_at_once():
    with pytest.raises(UserError) as err:
        prepare({"finetuning_type": ["freeze", "rslora", "nope"], "lerning_rate": 1, "stage": "sft"},
                source="r.yaml", host_keys=HOST_KEYS)
    text = err.value.render()
    assert "r.yaml" in text
    assert "`lerning_rate`" in text and "did you mean `learning_rate`" in text
    assert "unknown strategy 'nope'" in text
    assert "need different base methods" in text
    assert len(err.value.problems) >= 3


def test_unknown_stage_has_suggestion():
    with pytest.raises(UserError) as err:
        prepare({"stage": "stf"}, host_keys=HOST_KEYS)
    assert "did you mean `sft`" in err.value.render()


def test_strategy_validation_errors_name_the_key():
    with pytest.raises(UserError) as err:
        prepare({"finetuning_type": "rslora", "use_rslora": False}, host_keys=HOST_KEYS)
    assert "`use_rslora`" in err.value.render()


def test_plugin_validation_joins_earlier_problems():
    """An unknown key and a strategy-level conflict are reported in the same round."""
    with pytest.raises(UserError) as err:
        prepare({"finetuning_type": "rslora", "use_rslora": False, "lerning_rate": 1}, host_keys=HOST_KEYS)
    text = err.value.render()
    assert "`lerning_rate`" in text and "`use_rslora`" in text


def test_yaml_11_no_and_off_read_as_meant():
    """`eval_strategy: no` and `memory_check: off` are booleans to YAML 1.1 (PyYAML, OmegaConf)."""
    import yaml

    raw = yaml.safe_load("eval_strategy: no\nsave_strategy: no\nmemory_check: off\nlearning_rate: 1.0e-4\n")
    assert raw["eval_strategy"] is False and raw["memory_check"] is False
    run = prepare(raw, host_keys=HOST_KEYS | {"eval_strategy", "save_strategy"})
    assert run.host_args == {"eval_strategy": "no", "save_strategy": "no", "learning_rate": 1e-4}
    assert run.settings["estimator"].memory_check == "off"
    with pytest.raises(UserError, match="memory_check"):
        prepare({"memory_check": True}, host_keys=HOST_KEYS)


# ----------------------------------------------------------------- combinations, with the host's own key names

def parse(host_keys, stage, ftype, **extra):
    raw = {"stage": stage, "do_train": True, "dataset": "d", "finetuning_type": ftype, **extra}
    return prepare(raw, source="recipe.yaml", host_keys=host_keys, data=False)


VALID = [
    ("sft", "lora", {}, "lora", []),
    ("sft", "oft", {}, "oft", []),
    ("sft", "freeze", {}, "freeze", []),
    ("sft", "full", {}, "full", []),
    ("sft", "rslora", {}, "lora", ["rslora"]),
    ("sft", ["lora", "rslora"], {}, "lora", ["rslora"]),
    ("sft", "layerwise_lr", {}, "lora", ["layerwise_lr"]),
    ("sft", ["lora", "layerwise_lr"], {}, "lora", ["layerwise_lr"]),
    ("sft", "oft+layerwise_lr", {}, "oft", ["layerwise_lr"]),
    ("sft", ["freeze", "layerwise_lr"], {"freeze_trainable_layers": 2}, "freeze", ["layerwise_lr"]),
    ("sft", "full+layerwise_lr", {"optim": "paged_adamw_8bit"}, "full", ["layerwise_lr"]),
    ("sft", "rslora+layerwise_lr", {"quantization_bit": 4}, "lora", ["rslora", "layerwise_lr"]),
    ("pt", ["rslora", "layerwise_lr"], {}, "lora", ["rslora", "layerwise_lr"]),
    ("dpo", "lora+layerwise_lr", {}, "lora", ["layerwise_lr"]),
    ("cls", "lora", {}, "lora", []),
    ("cls", "cls_head", {}, "lora", ["cls_head"]),
    ("cls", "rslora+cls_head", {"quantization_bit": 4}, "lora", ["rslora", "cls_head"]),
    ("cls", ["rslora", "cls_head", "layerwise_lr"], {"layerwise_lr_decay": 0.8}, "lora",
     ["rslora", "cls_head", "layerwise_lr"]),
    ("cls", ["freeze", "layerwise_lr"], {}, "freeze", ["layerwise_lr"]),
    ("cls", "full+layerwise_lr", {}, "full", ["layerwise_lr"]),
]


@pytest.mark.parametrize("stage,ftype,extra,base,strategies", VALID)
def test_valid_combinations(host_keys, stage, ftype, extra, base, strategies):
    run = parse(host_keys, stage, ftype, **extra)
    assert run.base_type == base and run.strategy_names == strategies
    assert run.host_args["finetuning_type"] == base
    if "rslora" in strategies:
        assert run.host_args["use_rslora"] is True and run.host_args["lora_alpha"] == 2 * run.host_args["lora_rank"]


INVALID = [
    ("sft", ["rslora", "freeze"], {}, "need different base methods"),
    ("sft", "rslora+full", {}, "need different base methods"),
    ("cls", ["cls_head", "full"], {}, "need different base methods"),
    ("sft", "cls_head", {}, "needs stage cls"),
    ("cls", "oft", {}, "the cls stage supports"),
    ("cls", "oft+layerwise_lr", {}, "the cls stage supports"),
    ("sft", "rslora+rslora", {}, "is repeated"),
    ("sft", "rslora", {"use_dora": True}, "`use_dora`"),
    ("sft", "rslora", {"quantization_bit": 3}, "`quantization_bit`"),
    ("cls", "rslora+cls_head", {"lora_target": "q_proj,score"}, "`lora_target`: score"),
    ("sft", "layerwise_lr+lora", {"loraplus_lr_ratio": 16}, "`loraplus_lr_ratio`"),
    ("cls", ["rslora", "cls_head", "layerwise_lr"], {"use_galore": True}, "`use_galore`"),
    ("sft", "full+layerwise_lr", {"use_badam": True}, "`use_badam`"),
    ("sft", "full+layerwise_lr", {"use_adam_mini": True}, "`use_adam_mini`"),
    ("sft", "full+layerwise_lr", {"use_apollo": True}, "`use_apollo`"),
    ("sft", "full+layerwise_lr", {"use_muon": True}, "`use_muon`"),
    ("sft", "full+layerwise_lr", {"optim": "adalomo"}, "`optim`"),
    ("sft", "lora", {"layerwise_lr_decay": 0.5}, "which `finetuning_type` does not select"),
]


@pytest.mark.parametrize("stage,ftype,extra,message", INVALID)
def test_invalid_combinations_fail_at_parse_time_with_reason(host_keys, stage, ftype, extra, message):
    with pytest.raises(UserError) as err:
        parse(host_keys, stage, ftype, **extra)
    text = err.value.render()
    assert message in text and "recipe.yaml" in text


def test_problems_of_several_strategies_reported_together(host_keys):
    with pytest.raises(UserError) as err:
        parse(host_keys, "cls", ["rslora", "cls_head", "layerwise_lr"], use_dora=True, lora_target="score", loraplus_lr_ratio=4)
    text = err.value.render()
    assert "`use_dora`" in text and "`lora_target`" in text and "`loraplus_lr_ratio`" in text
