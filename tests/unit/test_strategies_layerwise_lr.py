"""Strategy layerwise_lr at parse time: its keys' values, other optimizer builders, DeepSpeed optimizer sections."""

from __future__ import annotations

import json

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.recipe import prepare



def test_bad_values_all_reported_with_their_keys(host_keys):
    with pytest.raises(UserError) as err:
        prepare({"finetuning_type": "lora+layerwise_lr", "layerwise_lr_decay": 1.5,
                 "layerwise_lr_overrides": {"score(": 1e-4, "embed": -1.0, "ok": "5e-4"}}, source="r.yaml",
                host_keys=host_keys)
    text = err.value.render()
    assert "`layerwise_lr_decay`" in text and "(0, 1]" in text
    assert "`layerwise_lr_overrides`" in text and "'score('" in text and "not a valid regular expression" in text
    assert "'embed': learning rate must be > 0" in text
    assert len(err.value.problems) == 2
    for bad in (0.0, -0.5):
        with pytest.raises(UserError, match="layerwise_lr_decay"):
            prepare({"finetuning_type": "layerwise_lr", "layerwise_lr_decay": bad}, host_keys=host_keys)


def test_string_lr_from_yaml_is_accepted(host_keys):
    run = prepare({"finetuning_type": "layerwise_lr", "layerwise_lr_overrides": {"score": "5e-4"}}, host_keys=host_keys)
    assert run.opts("layerwise_lr").layerwise_lr_overrides == {"score": 5e-4}


@pytest.mark.parametrize("key,value", [("loraplus_lr_ratio", 16.0), ("use_galore", True), ("use_apollo", True),
                                       ("use_badam", True), ("use_adam_mini", True), ("use_muon", True)])
def test_other_optimizer_builders_refused_naming_both(host_keys, key, value):
    with pytest.raises(UserError) as err:
        prepare({"finetuning_type": ["lora", "layerwise_lr"], key: value}, host_keys=host_keys)
    assert len(err.value.problems) == 1
    assert f"`{key}`" in err.value.problems[0] and "layerwise_lr" in err.value.problems[0]


def test_optim_with_own_groups_and_deepspeed_optimizer_section_refused(host_keys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "z3.json").write_text(json.dumps({"zero_optimization": {"stage": 3}, "train_batch_size": "auto"}))
    (tmp_path / "z2_opt.json").write_text(json.dumps({"zero_optimization": {"stage": 2},
                                                      "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}))
    ok = prepare({"finetuning_type": "layerwise_lr", "deepspeed": "z3.json", "optim": "paged_adamw_8bit"},
                 host_keys=host_keys)
    assert ok.host_args["deepspeed"] == "z3.json"
    with pytest.raises(UserError) as err:
        prepare({"finetuning_type": "layerwise_lr", "deepspeed": "z2_opt.json", "optim": "galore_adamw"},
                host_keys=host_keys)
    text = err.value.render()
    assert "`deepspeed`" in text and "`optimizer` section" in text
    assert "`optim`" in text and "galore_adamw" in text
