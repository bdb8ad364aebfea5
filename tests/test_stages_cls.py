"""The cls stage with torch: data from other file types, head handling, QLoRA load kwargs, ZeRO-3 head gathering
(data checks without torch: tests/unit/test_stages_cls_data.py)."""

from __future__ import annotations

import json
import sys
import types
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from llama_factory_ext.stages.cls import data as cls_data  # noqa: E402
from llama_factory_ext.stages.cls.args import ClsArgs  # noqa: E402


def _args(ddir, dataset="tr", eval_dataset=None, max_samples=None, val_size=0.0, do_train=True):
    data_args = SimpleNamespace(dataset_dir=str(ddir), dataset=dataset, eval_dataset=eval_dataset,
                                max_samples=max_samples, val_size=val_size)
    training_args = SimpleNamespace(seed=0, do_train=do_train)
    return data_args, training_args


@pytest.mark.parametrize("ext", ["json", "csv", "parquet"])
def test_other_file_types_and_pair_column(tmp_path, ext):
    rows = [{"q": f"question {i}", "a": f"answer {i}", "y": str(i % 2)} for i in range(10)]
    path = tmp_path / f"tr.{ext}"
    if ext == "json":
        path.write_text(json.dumps(rows))
    elif ext == "csv":
        import csv

        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["q", "a", "y"])
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    (tmp_path / "dataset_info.json").write_text(json.dumps(
        {"tr": {"file_name": path.name, "columns": {"text": "q", "text_pair": "a", "label": "y"}}}))
    got = cls_data.load_cls_data(*_args(tmp_path), ClsArgs())
    assert got.labels == ["0", "1"] and len(got.train) == 10
    assert got.train[3].text == "question 3" and got.train[3].text_pair == "answer 3"


# ---------------------------------------------------------------- model side


@pytest.fixture(scope="module")
def host_args(tiny_llama):
    from llamafactory.hparams import FinetuningArguments, ModelArguments

    def make(**ft):
        model_args = ModelArguments(model_name_or_path=str(tiny_llama))
        ft.setdefault("finetuning_type", "lora")
        return model_args, FinetuningArguments(**ft)

    return make


def _meta_cls_model(tiny_llama, num_labels=3):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.from_pretrained(tiny_llama)
    cfg.num_labels = num_labels
    cfg.pad_token_id = 0
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(cfg)


def test_apply_cls_adapter_on_meta_lora_all_keeps_head_out_of_lora(tiny_llama, host_args):
    from llama_factory_ext.stages.cls.model import apply_cls_adapter, trainable_names

    model_args, ft = host_args(lora_target="all", lora_rank=4)
    model = apply_cls_adapter(_meta_cls_model(tiny_llama), model_args, ft, None)
    names = trainable_names(model)
    assert "base_model.model.score.modules_to_save.default.weight" in names
    assert not any("score" in n and "lora_" in n for n in names)
    assert any("q_proj.lora_A" in n for n in names) and any("down_proj.lora_B" in n for n in names)
    assert model.peft_config["default"].task_type == "SEQ_CLS"
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("ftype", ["freeze", "full"])
def test_apply_cls_adapter_freeze_full_train_head(tiny_llama, host_args, ftype):
    from llama_factory_ext.stages.cls.model import apply_cls_adapter, trainable_names

    model_args, ft = host_args(finetuning_type=ftype, freeze_trainable_layers=1)
    names = trainable_names(apply_cls_adapter(_meta_cls_model(tiny_llama), model_args, ft, None))
    assert "score.weight" in names
    if ftype == "freeze":
        assert any(".1." in n for n in names) and not any(".0." in n for n in names)
    else:
        assert any("layers.0." in n for n in names)


def test_quantization_load_kwargs_keep_head_unquantized(tiny_llama, host_args):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoConfig, AutoTokenizer

    from llama_factory_ext.stages.cls.model import load_kwargs

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    for bits in (4, 8):
        model_args, _ = host_args()
        model_args.quantization_bit = bits
        kwargs = load_kwargs(AutoConfig.from_pretrained(tiny_llama), tok, model_args)
        q = kwargs["quantization_config"]
        assert (q.load_in_4bit, q.load_in_8bit) == (bits == 4, bits == 8)
        assert "score" in q.llm_int8_skip_modules


def test_gather_head_state_uses_gathered_parameters_for_zero3_params(monkeypatch):
    """ZeRO-3 params are [0]-shaped until gathered; the head must be saved full-shape (LLaMA-Factory #7665)."""
    from llama_factory_ext.stages.cls.model import gather_head_state

    full = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    model = torch.nn.Module()
    model.body = torch.nn.Linear(4, 4)
    model.score = torch.nn.Linear(4, 3, bias=False)
    param = model.score.weight
    param.data = torch.empty(0)
    param.ds_numel = full.numel()
    calls = []

    class Gathered:
        def __init__(self, params, modifier_rank=None):
            calls.append([p.shape for p in params])
            self.params = params

        def __enter__(self):
            for p in self.params:
                p.data = full.clone()

        def __exit__(self, *exc):
            for p in self.params:
                p.data = torch.empty(0)

    fake = types.ModuleType("deepspeed")
    fake.zero = SimpleNamespace(GatheredParameters=Gathered)
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    state = gather_head_state(model, ["score"])
    assert list(state) == ["score.weight"] and state["score.weight"].shape == (3, 4)
    assert torch.equal(state["score.weight"], full) and calls == [[torch.Size([0])]]
    assert param.numel() == 0  # released after the gather


def test_repair_adapter_head_replaces_empty_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    from llama_factory_ext.stages.cls.trainer import repair_adapter_head

    path = tmp_path / "adapter_model.safetensors"
    save_file({"base_model.model.score.weight": torch.empty(0), "base_model.model.layers.0.q.lora_A.weight": torch.ones(2, 2)},
              str(path))
    assert repair_adapter_head(str(path), {"score.weight": torch.full((3, 4), 2.0)})
    out = load_file(str(path))
    assert out["base_model.model.score.weight"].shape == (3, 4)
    assert torch.equal(out["base_model.model.layers.0.q.lora_A.weight"], torch.ones(2, 2))


def test_class_weights_balanced():
    from llama_factory_ext.stages.cls.trainer import class_weights_for

    w = class_weights_for("balanced", ["a", "b"], [0, 0, 0, 1])
    assert w == pytest.approx([4 / 6, 2.0])
    assert class_weights_for({"b": 3.0}, ["a", "b"], []) == [1.0, 3.0]
    assert class_weights_for(None, ["a", "b"], [0]) is None


def test_pad_token_picked_for_llama3_tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    from llama_factory_ext.stages.cls.model import pick_pad_token

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    assert tok.pad_token is None
    pid = pick_pad_token(tok)
    assert tok.pad_token == "<|finetune_right_pad_id|>" and pid == tok.convert_tokens_to_ids("<|finetune_right_pad_id|>")


def test_template_and_pair_encoding(tiny_llama):
    from transformers import AutoTokenizer

    from llama_factory_ext.stages.cls.encoding import apply_template, encode

    assert apply_template("Q: {text} A: {text_pair}", "x", "y") == ("Q: x A: y", None)
    assert apply_template("Classify: {text}", "x", "y") == ("Classify: x", "y")
    assert apply_template(None, "{text}", None) == ("{text}", None)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    plain = encode(tok, ["python library"], None, 64, None)["input_ids"][0]
    templated = encode(tok, ["python library"], None, 64, "Classify: {text}")["input_ids"][0]
    assert len(templated) > len(plain)
    assert len(encode(tok, ["word " * 200], None, 16, None)["input_ids"][0]) == 16


def test_bucketed_sampler_batches_similar_lengths_in_random_order():
    import random

    from llama_factory_ext.stages.cls.trainer import BucketedRandomSampler

    rng = random.Random(0)
    lengths = [rng.randint(5, 128) for _ in range(1000)]
    s = BucketedRandomSampler(lengths, batch_size=32, buckets=8, seed=1)
    first = s.batches()
    flat = [i for b in first for i in b]
    assert sorted(flat) == list(range(1000))  # every row once
    assert all(len(b) == 32 for b in first[:-1]) and len(first[-1]) == 1000 % 32
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first[:-1]) / (len(first) - 1)
    shuffled = rng.sample(range(1000), 1000)
    random_spread = sum(max(lengths[i] for i in shuffled[k:k + 32]) - min(lengths[i] for i in shuffled[k:k + 32])
                        for k in range(0, 992, 32)) / 31
    assert spread < random_spread / 3  # far less padding than random batches
    # the batches are not ordered by length (unlike a sorted or longest-first sampler)
    maxima = [max(lengths[i] for i in b) for b in first[:-1]]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    s.set_epoch(1)
    assert s.batches() != first  # a new order each epoch
