"""Strategy layerwise_lr: groups, validation, the optimizer the host's trainer really builds, schedulers, CLI."""

from __future__ import annotations


import pytest
import torch

from conftest import read_log, run_cli, write_yaml
from lfx_capture import sft_args, tiny_llama4, train_capture  # noqa: F401  (fixture)
from llama_factory_ext import runtime
from llama_factory_ext.host.keys import host_arg_names
from llama_factory_ext.api import UserError
from llama_factory_ext.recipe import prepare
from llama_factory_ext.strategies.layerwise_lr import format_table, layerwise_table
from llama_factory_ext.strategies.layerwise_lr.args import LayerwiseLrArgs

torch.set_num_threads(1)
BASE = 1e-3


def tiny_model(layers=4, bias=False, cls=False, device="cpu", hidden=32):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    cfg = LlamaConfig(vocab_size=96, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, attention_bias=bias, num_labels=3, pad_token_id=0)
    with torch.device(device):
        return (LlamaForSequenceClassification if cls else LlamaForCausalLM)(cfg)


def groups_by_param(model, opts, wd=0.1):
    """param name -> (group, lr, weight_decay), from the table's own grouping."""
    from llama_factory_ext.strategies.layerwise_lr import build_groups

    out = {}
    for g in build_groups(model, {"learning_rate": BASE, "weight_decay": wd}, opts):
        for n in g.names:
            assert n not in out, f"{n} in two groups"
            out[n] = (g.name, g.lr, g.weight_decay)
    return out


# ----------------------------------------------------------------- grouping (no training)

def test_block_i_gets_decay_power_and_embeddings_the_lowest():
    model = tiny_model(layers=4, bias=True)
    got = groups_by_param(model, LayerwiseLrArgs(layerwise_lr_decay=0.5))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(got) == trainable
    for i in range(4):
        assert got[f"model.layers.{i}.mlp.up_proj.weight"][1] == pytest.approx(BASE * 0.5 ** (3 - i))
    assert got["model.embed_tokens.weight"][1] == pytest.approx(BASE * 0.5 ** 4)
    assert got["model.norm.weight"][1] == BASE and got["lm_head.weight"][1] == BASE
    # no weight decay on biases and norm weights, decay on everything else
    assert got["model.layers.1.self_attn.q_proj.bias"][2] == 0.0
    assert got["model.layers.1.input_layernorm.weight"][2] == 0.0
    assert got["model.norm.weight"][2] == 0.0
    assert got["model.layers.1.self_attn.q_proj.weight"][2] == 0.1
    assert got["lm_head.weight"][2] == 0.1


def test_overrides_first_match_wins_in_yaml_order():
    model = tiny_model()
    opts = LayerwiseLrArgs(layerwise_lr_decay=0.9, layerwise_lr_overrides={
        r"layers\.3\.": 2e-3, r"layers\.3\.mlp": 7e-3, r"embed_tokens": 1e-6, r"^lm_head\.": 5e-4})
    got = groups_by_param(model, opts)
    assert got["model.layers.3.mlp.up_proj.weight"][1] == 2e-3  # first pattern, not the second
    assert got["model.layers.3.input_layernorm.weight"][1:] == (2e-3, 0.0)  # no decay still applies
    assert got["model.embed_tokens.weight"][1] == 1e-6
    assert got["lm_head.weight"][1] == 5e-4
    assert got["model.layers.2.mlp.up_proj.weight"][1] == pytest.approx(BASE * 0.9)


def test_peft_lora_per_layer_and_cls_head_modules_to_save_copy():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(cls=True), LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                                                            target_modules=["q_proj", "v_proj"]))
    got = groups_by_param(model, LayerwiseLrArgs(layerwise_lr_decay=0.5, layerwise_lr_overrides={r"\.score\.": 5e-4}))
    head = "base_model.model.score.modules_to_save.default.weight"
    assert got[head][1] == 5e-4
    assert not any("original_module" in n for n in got)  # frozen copy stays out
    for i in range(4):
        a = f"base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.default.weight"
        b = f"base_model.model.model.layers.{i}.self_attn.v_proj.lora_B.default.weight"
        assert got[a][1] == got[b][1] == pytest.approx(BASE * 0.5 ** (3 - i))
    assert set(got) == {n for n, p in model.named_parameters() if p.requires_grad}
    # without an override the head gets the base lr
    assert groups_by_param(model, LayerwiseLrArgs(layerwise_lr_decay=0.5))[head][1] == BASE


def test_table_on_meta_device_and_formatter():
    model = tiny_model(device="meta")
    rows = layerwise_table(model, {"learning_rate": BASE, "weight_decay": 0.0}, LayerwiseLrArgs(layerwise_lr_decay=0.5))
    assert rows[0]["group"] == "top" and rows[0]["lr"] == BASE  # the trainer logs the first group's lr
    assert [r["group"] for r in rows] == ["top", "layer.3", "layer.2", "layer.1", "layer.0", "embeddings"]
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in model.parameters())
    text = format_table(rows)
    assert text.splitlines()[0].split() == ["group", "pattern", "params", "lr", "weight_decay"]
    assert "6 groups" in text and "6.25e-05" in text


def test_deepspeed_zero3_partitioned_params_counted_with_ds_numel():
    model = tiny_model()
    full = {n: p.numel() for n, p in model.named_parameters()}
    for p in model.parameters():  # what ZeRO-3 leaves behind: an empty local tensor and ds_numel
        p.ds_numel = p.numel()
        p.data = torch.empty(0)
    rows = layerwise_table(model, {"learning_rate": BASE}, LayerwiseLrArgs(layerwise_lr_decay=0.5))
    assert sum(r["params"] for r in rows) == sum(full.values())
    assert [r["group"] for r in rows][1] == "layer.3"  # blocks still found by ds_numel size


# ----------------------------------------------------------------- validation at parse time

HOST_KEYS = None


def host_keys():
    global HOST_KEYS
    if HOST_KEYS is None:
        HOST_KEYS = host_arg_names()
    return HOST_KEYS


# ----------------------------------------------------------------- optimizer class choice, one real step each

@pytest.mark.parametrize("optim,cls,bits,paged", [
    ("adamw_torch", "torch.optim.adamw.AdamW", None, None),
    ("adamw_8bit", "bitsandbytes.optim.adamw.AdamW", 8, False),
    ("paged_adamw_8bit", "bitsandbytes.optim.adamw.AdamW", 8, True),
    ("paged_adamw_32bit", "bitsandbytes.optim.adamw.AdamW", 32, True),
])
def test_host_builds_chosen_optimizer_class_from_groups(tmp_path, optim, cls, bits, paged):
    from transformers import TrainingArguments

    if bits is not None:
        import bitsandbytes as bnb

        bnb.optim.GlobalOptimManager.get_instance().initialize()  # earlier tests' overrides
    model = tiny_model(hidden=64)  # q_proj has 4096 elements: 8-bit states
    run = prepare({"finetuning_type": ["full", "layerwise_lr"], "layerwise_lr_decay": 0.5}, host_keys=host_keys())
    runtime.set_current(run)
    try:
        args = TrainingArguments(output_dir=str(tmp_path), optim=optim, learning_rate=BASE, weight_decay=0.01,
                                 use_cpu=True, report_to="none")
        opt = runtime.build_strategy_optimizer(model, args)
    finally:
        runtime.set_current(None)
    assert f"{type(opt).__module__}.{type(opt).__name__}" == cls
    assert [g["lfx_group"] for g in opt.param_groups][:3] == ["top", "top", "layer.3"]
    assert opt.param_groups[-1]["lr"] == pytest.approx(BASE * 0.5 ** 4)
    if bits is not None:
        assert opt.args.optim_bits == bits and opt.is_paged == paged
    if bits == 8:
        import bitsandbytes as bnb

        overrides = bnb.optim.GlobalOptimManager.get_instance().module_weight_config_triple
        assert any(m is model.model.embed_tokens and cfg == {"optim_bits": 32} for m, _, cfg in overrides)

    # one real step (bitsandbytes runs its optimizers on the CPU): Adam's first update is ~lr per element, so each
    # group moves by its own layer-wise lr
    before = {id(p): p.detach().clone() for p in model.parameters()}
    ids = torch.randint(0, 96, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    checked = set()
    for g in opt.param_groups:
        for p in g["params"]:
            if p.grad is not None and p.grad.abs().median() > 1e-4:
                moved = (p.detach() - before[id(p)]).abs().median().item()
                assert moved == pytest.approx(g["lr"], rel=0.15), (g["lfx_group"], moved, g["lr"])
                checked.add(g["lfx_group"])
    assert len(checked) >= 4, checked
    if bits == 8:
        assert opt.state[model.model.layers[0].self_attn.q_proj.weight]["state1"].dtype == torch.uint8
        assert opt.state[model.model.embed_tokens.weight]["state1"].dtype == torch.float32


@pytest.mark.parametrize("name,kwargs", [
    ("linear", {}), ("cosine", {}), ("cosine_with_restarts", {}), ("polynomial", {"lr_end": 1e-5, "power": 2.0}),
    ("constant", {}), ("constant_with_warmup", {}), ("inverse_sqrt", {}), ("cosine_with_min_lr", {"min_lr": 1e-5}),
    ("cosine_warmup_with_min_lr", {"min_lr": 1e-5}), ("warmup_stable_decay", {"num_decay_steps": 3, "min_lr_ratio": 0.1}),
    ("reduce_lr_on_plateau", {"patience": 1}),
])
def test_every_scheduler_keeps_group_ratios(tmp_path, name, kwargs):
    from transformers import TrainingArguments, get_scheduler

    model = tiny_model()
    run = prepare({"finetuning_type": ["full", "layerwise_lr"], "layerwise_lr_decay": 0.5,
                   "layerwise_lr_overrides": {"embed": 1e-4}}, host_keys=host_keys())
    runtime.set_current(run)
    try:
        opt = runtime.build_strategy_optimizer(model, TrainingArguments(output_dir=str(tmp_path), learning_rate=BASE,
                                                                     use_cpu=True, report_to="none"))
    finally:
        runtime.set_current(None)
    start = [g["lr"] for g in opt.param_groups]
    sched = get_scheduler(name, opt, num_warmup_steps=2, num_training_steps=10, scheduler_specific_kwargs=kwargs)
    seen = set()
    # (reduce_lr_on_plateau stops cutting a group once the cut is below torch's eps=1e-8: 6 cuts here)
    for step in range(10):
        opt.step()
        sched.step(1.0) if name == "reduce_lr_on_plateau" else sched.step()
        now = [g["lr"] for g in opt.param_groups]
        seen.add(round(now[0], 12))
        if now[0] > 0:
            assert [n / now[0] for n in now] == pytest.approx([s / start[0] for s in start], rel=1e-6), step
    assert len(seen) > 1 or name == "constant"


# ----------------------------------------------------------------- the optimizer the host's trainer really builds

def test_freeze_lower_layers_train_top_faster(tiny_llama4, tmp_path):
    cb = train_capture(sft_args(tiny_llama4, tmp_path / "out", finetuning_type=["freeze", "layerwise_lr"],
                                freeze_trainable_layers=2, layerwise_lr_decay=0.5, weight_decay=0.1))
    assert cb.optimizer_class == "torch.optim.adamw.AdamW"
    in_optimizer = sorted(n for g in cb.groups for n in g["params"])
    assert in_optimizer == cb.trainable and all(".layers.2." in n or ".layers.3." in n for n in in_optimizer)
    lr_of = {n: (g["lr"], g["weight_decay"]) for g in cb.groups for n in g["params"]}
    assert lr_of["model.layers.3.mlp.down_proj.weight"] == (BASE, 0.1)
    assert lr_of["model.layers.2.mlp.down_proj.weight"] == (BASE * 0.5, 0.1)
    assert lr_of["model.layers.2.post_attention_layernorm.weight"] == (BASE * 0.5, 0.0)
    assert cb.lrs[-1] == [g["lr"] for g in cb.groups]  # constant scheduler


def test_full_finetuning_with_overrides(tiny_llama4, tmp_path):
    cb = train_capture(sft_args(tiny_llama4, tmp_path / "out", finetuning_type="full+layerwise_lr",
                                layerwise_lr_decay=0.8, layerwise_lr_overrides={"lm_head": 5e-4, "embed_tokens": 1e-6}))
    lr_of = {n: g["lr"] for g in cb.groups for n in g["params"]}
    assert sorted(lr_of) == cb.trainable and len(lr_of) == sum(len(g["params"]) for g in cb.groups)
    assert lr_of["lm_head.weight"] == 5e-4 and lr_of["model.embed_tokens.weight"] == 1e-6
    assert lr_of["model.norm.weight"] == BASE
    for i in range(4):
        assert lr_of[f"model.layers.{i}.self_attn.o_proj.weight"] == pytest.approx(BASE * 0.8 ** (3 - i))


def test_lora_groups_and_cosine_warmup_with_gradient_accumulation(tiny_llama4, tmp_path):
    cb = train_capture(sft_args(tiny_llama4, tmp_path / "out", finetuning_type=["lora", "layerwise_lr"],
                                lora_target="all", layerwise_lr_decay=0.5, lr_scheduler_type="cosine",
                                warmup_steps=2, max_steps=6, gradient_accumulation_steps=2, max_samples=32))
    lr_of = {n: g["lr"] for g in cb.groups for n in g["params"]}
    assert sorted(lr_of) == cb.trainable and all("lora_" in n for n in lr_of)
    for i in range(4):
        assert lr_of[f"base_model.model.model.layers.{i}.mlp.gate_proj.lora_A.default.weight"] == pytest.approx(
            BASE * 0.5 ** (3 - i))
    assert len(cb.lrs) == 6  # one scheduler step per optimizer step, not per micro-batch
    start = [g["lr"] for g in cb.groups]
    assert cb.lrs[0][0] == pytest.approx(BASE / 2)  # warmup step 1 of 2
    for lrs in cb.lrs:
        if lrs[0] > 0:
            assert [x / lrs[0] for x in lrs] == pytest.approx([s / start[0] for s in start])
    assert cb.lrs[2][0] < cb.lrs[1][0]  # decaying after warmup


# ----------------------------------------------------------------- real CLI

def test_cli_train_prints_table_and_trains(tiny_llama, workdir):
    recipe = write_yaml(workdir / "lw.yaml", {
        **sft_args(tiny_llama, workdir / "out", dataset_dir="data", max_steps=2),
        "finetuning_type": ["rslora", "layerwise_lr"], "layerwise_lr_decay": 0.5,
        "layerwise_lr_overrides": {"embed": 1e-6, "nothing_named_so": 1e-4}})
    res = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "layerwise_lr parameter groups" in out
    table = out.split("layerwise_lr parameter groups:")[1].splitlines()[1:]
    assert table[0].split() == ["group", "pattern", "params", "lr", "weight_decay"]
    rows = {line.split()[0]: line.split() for line in table[2:6]}
    assert rows["layer.1"][3] == "0.001" and rows["layer.0"][3] == "0.0005"
    assert "pattern 'nothing_named_so' matches no trainable parameter" in out
    log = read_log(workdir / "out")
    assert log and log[0]["lr"] == pytest.approx(BASE)


def test_cli_refuses_layerwise_with_loraplus_before_loading(tiny_llama, workdir):
    recipe = write_yaml(workdir / "bad.yaml", {**sft_args(tiny_llama, workdir / "never", dataset_dir="data"),
                                               "finetuning_type": "lora+layerwise_lr", "loraplus_lr_ratio": 16.0})
    res = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "`loraplus_lr_ratio`" in res.stderr and "layerwise_lr" in res.stderr and "bad.yaml" in res.stderr
    assert not (workdir / "never").exists()


def test_fsdp_flattened_params_refused_with_fix():
    model = torch.nn.Module()
    model._flat_param = torch.nn.Parameter(torch.zeros(4))
    with pytest.raises(UserError, match="use_orig_params: true"):
        layerwise_table(model, {"learning_rate": BASE}, LayerwiseLrArgs())


def test_bert_encoder_blocks_embeddings_and_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3,
                                                     num_attention_heads=4, intermediate_size=64, num_labels=4))
    got = groups_by_param(model, LayerwiseLrArgs(layerwise_lr_decay=0.5))
    assert got["bert.encoder.layer.0.attention.self.query.weight"][:2] == ("layer.0", BASE * 0.25)
    assert got["bert.encoder.layer.2.output.dense.weight"][:2] == ("layer.2", BASE)
    for name in ("bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
                 "bert.embeddings.LayerNorm.weight"):
        assert got[name][:2] == ("embeddings", BASE * 0.125)
    assert got["bert.embeddings.LayerNorm.weight"][2] == 0.0 and got["bert.encoder.layer.1.output.LayerNorm.bias"][2] == 0.0
    assert got["classifier.weight"][:3] == ("top", BASE, 0.1) and got["bert.pooler.dense.weight"][1] == BASE


def test_model_without_blocks_warns_that_decay_is_not_applied(capsys):
    from llama_factory_ext.strategies.layerwise_lr import LayerwiseLrStrategy

    groups = LayerwiseLrStrategy().param_groups(torch.nn.Linear(4, 2), {"learning_rate": BASE, "weight_decay": 0.1},
                                                LayerwiseLrArgs(layerwise_lr_decay=0.5), None)
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in groups] == [(BASE, 0.1, 1), (BASE, 0.0, 1)]
    assert "no transformer block list (ModuleList) found" in capsys.readouterr().out
