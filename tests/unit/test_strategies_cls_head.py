"""Strategy cls_head and stage cls at parse time: base method, head outside LoRA, stage-only keys."""

from __future__ import annotations

import pytest

from llama_factory_ext.api import UserError



def test_cls_head_and_stage_recipe_checks(host_keys):
    from llama_factory_ext.recipe import prepare

    base = {"model_name_or_path": "m", "stage": "cls", "do_train": True, "dataset": "d", "output_dir": "o"}
    run = prepare({**base, "finetuning_type": ["rslora", "cls_head"], "label_names": ["a", "b"]}, data=False, host_keys=host_keys)
    assert run.host_args["finetuning_type"] == "lora" and run.host_args["lora_target"] == "all"
    assert run.stage.name == "cls" and run.stage_opts.label_names == ["a", "b"]
    with pytest.raises(UserError, match="lora_target.*score is the classification head"):
        prepare({**base, "finetuning_type": "cls_head", "lora_target": "q_proj,score"}, host_keys=host_keys)
    with pytest.raises(UserError, match="predict_with_generate"):
        prepare({**base, "finetuning_type": "full", "predict_with_generate": True}, host_keys=host_keys)
    with pytest.raises(UserError, match="quantization_bit.*not full"):
        prepare({**base, "finetuning_type": "full", "quantization_bit": 4}, host_keys=host_keys)
    with pytest.raises(UserError, match="needs stage cls"):
        prepare({**base, "stage": "sft", "finetuning_type": "cls_head"}, host_keys=host_keys)
    with pytest.raises(UserError, match="label_names.*belongs to stage 'cls'"):
        prepare({**base, "stage": "sft", "finetuning_type": "lora", "label_names": ["a", "b"]}, host_keys=host_keys)
