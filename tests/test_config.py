"""config.prepare: key ownership, composition, did-you-mean, all problems at once."""

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.config import parse_finetuning_type, prepare

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
    assert run.extras["ext_keys"] == []  # no pack key in use: nothing for the pack to do


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
