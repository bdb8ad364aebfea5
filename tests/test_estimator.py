"""Memory estimator: exact parameter/gradient/optimizer bytes against real models, activation model against a
CPU allocation count, CLI, memory_check hook, plugin terms."""

from __future__ import annotations

import json
import re

import pytest

from conftest import read_log, run_cli, write_yaml  # noqa: F401

from estimator_recipe import LLAMA3_8B, recipe


# ---------------------------------------------------------------- parameter counts


def _host_model(tiny_llama, compute_dtype=None, **kw):
    """The model the host itself builds (real weights, CPU), via its own load path."""
    from llamafactory.extras.misc import count_parameters
    from llamafactory.hparams.parser import _parse_train_args
    from llamafactory.model import load_model, load_tokenizer

    args = recipe(tiny_llama, **kw)
    args.pop("report_to")
    model_args, data_args, training_args, finetuning_args, _ = _parse_train_args(args)
    if compute_dtype is not None:  # what `bf16: true` gives on a GPU
        model_args.compute_dtype = compute_dtype
    tok = load_tokenizer(model_args)["tokenizer"]
    model = load_model(tok, model_args, finetuning_args, is_trainable=True)
    return model, count_parameters(model)


HOST_CASES = [
    {"finetuning_type": "lora"},
    {"finetuning_type": "lora", "use_dora": True, "lora_rank": 4},
    {"finetuning_type": "lora", "use_rslora": True, "lora_target": "q_proj,v_proj", "additional_target": "lm_head"},
    {"finetuning_type": "freeze", "freeze_trainable_layers": 1},
    {"finetuning_type": "full"},
    {"finetuning_type": "full", "pure_bf16": True},
]


@pytest.mark.parametrize("kw", HOST_CASES, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_counts_and_state_bytes_equal_host_model(tiny_llama, kw):
    """Parameter counts, weight bytes, gradient bytes and AdamW state bytes equal those of a real step."""
    import torch

    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.estimator.terms import static_parts

    model, (trainable, total) = _host_model(tiny_llama, **kw)
    spec = spec_from_recipe(recipe(tiny_llama, **kw))
    assert (spec.trainable_params, spec.total_params) == (trainable, total)

    st = static_parts(spec)
    params = {id(p): p for p in model.parameters()}.values()
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    assert st["weights"] + st["master"] == weight_bytes

    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    assert st["grads"] == grad_bytes
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-4, fused=True)
    opt.step()
    state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")
    assert st["states"] == state_bytes


@pytest.mark.parametrize("kw", [{"quantization_bit": 4}, {"quantization_bit": 4, "double_quantization": False},
                                {"quantization_bit": 8}], ids=["nf4-double", "nf4", "int8"])
def test_quantized_weight_and_constant_bytes_equal_host_model(tiny_llama, kw):
    """QLoRA on bitsandbytes' CPU backend: the host's quantized model stores exactly the estimated weight bytes
    and quantization constants (absmax, codes, offsets, int8 row scales)."""
    import bitsandbytes as bnb
    import torch

    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.estimator.core import lora_params
    from llama_factory_ext.estimator.terms import _quantized_weights, static_parts

    kw = {"finetuning_type": "lora", **kw}
    model, (trainable, total) = _host_model(tiny_llama, **kw)
    spec = spec_from_recipe(recipe(tiny_llama, **kw))
    assert (spec.trainable_params, spec.total_params) == (trainable, total)
    st = static_parts(spec)
    params = {id(p): p for p in model.parameters()}.values()
    assert st["weights"] + st["master"] == sum(p.numel() * p.element_size() for p in params)

    constants = {}
    quantized = [m for m in model.modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))]
    assert len(quantized) == spec.params.quantizable_modules > 0
    for m in quantized:
        s = getattr(m.weight, "quant_state", None)
        tensors = [getattr(m.weight, "SCB", None)]
        if s is not None:
            tensors += [s.absmax, s.code, s.offset] + ([s.state2.absmax, s.state2.code] if s.nested else [])
        for t in tensors:
            if isinstance(t, torch.Tensor):
                constants[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
    assert _quantized_weights(spec)[1] == sum(constants.values())

    # the advice's analytic LoRA stats (used for "switch to QLoRA") agree with the built model
    built = spec_from_recipe(recipe(LLAMA3_8B, finetuning_type="lora", lora_rank=8, quantization_bit=4)).params
    analytic = lora_params(spec_from_recipe(recipe(LLAMA3_8B, finetuning_type="full")), 8)
    for field in ("quantizable_params", "quantizable_rows", "quantizable_modules", "quantizable_blocks",
                  "quantizable_blocks2", "trainable_params"):
        assert getattr(analytic, field) == getattr(built, field), field


@pytest.mark.parametrize("kw", [{"finetuning_type": "full", "optim": "adamw_bnb_8bit"},
                                {"finetuning_type": "lora", "lora_rank": 64, "optim": "paged_adamw_8bit"}],
                         ids=["full-adamw8bit", "lora-paged8bit"])
def test_8bit_optimizer_state_bytes_equal_a_real_step(tiny_llama, tmp_path, kw):
    """The optimizer HF's Trainer builds (bitsandbytes, embeddings overridden to 32-bit), stepped once on the CPU:
    its states (8-bit + absmax + maps, 32-bit for small tensors and embeddings) equal the estimate."""
    import torch
    from transformers import Trainer, TrainingArguments

    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.estimator.terms import static_parts

    import bitsandbytes as bnb

    bnb.optim.GlobalOptimManager.get_instance().initialize()  # overrides registered by earlier tests' trainers
    model, _ = _host_model(tiny_llama, **kw)
    spec = spec_from_recipe(recipe(tiny_llama, **kw))
    args = TrainingArguments(output_dir=str(tmp_path), optim=kw["optim"], use_cpu=True, report_to="none")
    opt = Trainer(model=model, args=args).create_optimizer()
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    tensors = {(t.data_ptr(), t.numel()): t.numel() * t.element_size()
               for s in opt.state.values() for k, t in s.items() if torch.is_tensor(t) and k != "step"}
    assert any(s["state1"].dtype == torch.uint8 for s in opt.state.values())
    assert static_parts(spec)["states"] == sum(tensors.values())


def test_counts_equal_real_training_log(tiny_llama, workdir, monkeypatch):
    """The real `llamafactory-cli train` log line equals `llamafactory-ext estimate --json`; the run prints the
    pre-flight line (no CUDA here: no verdict)."""
    args = ["tiny_sft_rslora.yaml", f"model_name_or_path={tiny_llama}", "max_steps=1"]
    est = run_cli(["llamafactory-ext", "estimate", *args, "--json"], workdir)
    assert est.returncode == 0, est.stderr
    data = json.loads(est.stdout)
    import subprocess

    from conftest import BIN, env

    cache = workdir / "xdg_cache"
    train = subprocess.run([str(BIN / "llamafactory-cli"), "train", *args, f"output_dir={workdir / 'out'}"],
                           cwd=str(workdir), env=env(XDG_CACHE_HOME=cache), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=600)
    log = train.stdout  # one stream, in order
    assert train.returncode == 0, log[-3000:]
    m = re.search(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+)", log)
    assert m, log[-2000:]
    assert (data["trainable_params"], data["total_params"]) == tuple(int(x.replace(",", "")) for x in m.groups())
    lines = log.splitlines()
    at = [i for i, l in enumerate(lines) if "llama-factory-ext memory estimate" in l]
    assert at and "no CUDA here, no verdict" in lines[at[0]]
    assert f"{data['trainable_params']:,}" in lines[at[0]]
    weights = [i for i, l in enumerate(lines) if "trainable params:" in l]
    assert at[0] < weights[0]  # before the host loads weights
    from llama_factory_ext.host import keys as fast

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    shipped = (fast.SNAPSHOTS / fast.cache_path().name).is_file()
    # the host's keys after a run: a tested host's shipped snapshot (nothing written), else the pre-flight's cache
    assert bool(list(cache.glob("llama_factory_ext/host_args-*.json"))) != shipped
    assert fast.cached_host_args() is not None


# ---------------------------------------------------------------- memory model

def test_activation_model_matches_cpu_allocation_count(tiny_llama):
    """One real forward+backward of the tiny Llama under a TorchDispatchMode counter: per-layer saved bytes and
    the step's peak are within 15% of the analytical model."""
    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.estimator.simulate import simulate_spec

    for kw in ({"disable_gradient_checkpointing": True}, {"disable_gradient_checkpointing": False},
               {"finetuning_type": "full", "disable_gradient_checkpointing": True}):
        spec = spec_from_recipe(recipe(tiny_llama, **kw))
        r = simulate_spec(spec, factor=1)
        assert r["measured_per_layer"] > 0
        assert abs(r["predicted_per_layer"] / r["measured_per_layer"] - 1) < 0.15, (kw, r)
        assert abs(r["predicted_peak"] / r["measured_peak"] - 1) < 0.15, (kw, r)


@pytest.fixture(scope="module")
def bf16_llamas(tmp_path_factory):
    """1- and 2-layer bf16 Llamas (hidden 128, SwiGLU 256, 4 heads, 2 KV heads) saved for the host's 4-bit loader."""
    import torch
    from transformers import AutoModelForCausalLM

    from conftest import RECIPES
    from llama_factory_ext.tiny import build_tiny_llama, read_texts

    out = {}
    for layers in (1, 2):
        d = build_tiny_llama(tmp_path_factory.mktemp(f"bf16_l{layers}"), read_texts(RECIPES / "data" / "debian_sample_train.jsonl"),
                             hidden_size=128, num_layers=layers)
        AutoModelForCausalLM.from_pretrained(str(d)).to(torch.bfloat16).save_pretrained(str(d))
        out[layers] = d
    return out


@pytest.mark.parametrize("double_quant", [False, True])
def test_dequantized_weight_counted_on_a_4bit_linear(double_quant):
    """Backward through one bitsandbytes 4-bit Linear holds one dequantized weight (+ fp32 absmax when nested)."""
    import bitsandbytes as bnb
    import torch

    from llama_factory_ext.estimator.simulate import AllocCounter
    from llama_factory_ext.estimator.terms import dequant_bytes

    torch.manual_seed(0)
    n_in, n_out, tokens = 1024, 4096, 4
    lin = bnb.nn.Linear4bit(n_in, n_out, bias=False, compute_dtype=torch.bfloat16, compress_statistics=double_quant,
                            quant_type="nf4", quant_storage=torch.bfloat16)
    lin.weight = bnb.nn.Params4bit(torch.randn(n_out, n_in, dtype=torch.bfloat16), requires_grad=False,
                                   compress_statistics=double_quant, quant_type="nf4", quant_storage=torch.bfloat16)
    lin = lin.to("cpu")
    x = torch.randn(1, tokens, n_in, dtype=torch.bfloat16, requires_grad=True)
    counter = AllocCounter()
    with counter:
        y = lin(x)
        assert counter.peak == 2 * tokens * n_out  # forward: the output only (CPU's fused kernel at 4 tokens)
        grad_out = torch.ones_like(y)
        counter.reset_peak()
        y.backward(grad_out)
    extra = counter.peak - 2 * (2 * tokens * n_out)  # above y and its incoming gradient
    expected = dequant_bytes(n_in * n_out, 2, double_quant)
    assert expected <= extra <= expected + 2 * tokens * n_in  # + x's gradient, made while the weight is alive


def test_qlora_step_counted_on_cpu(bf16_llamas):
    """A real QLoRA step (the host's 4-bit model, real bitsandbytes, PEFT's LoRA layers on their CUDA-autocast path),
    as the host builds it and with non-quantized params cast to fp32 as PEFT's prepare_model_for_kbit_training does:
    weight bytes exactly; per-layer saved bytes within 5%; what the fp32 cast adds after forward within 10%."""
    import torch

    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.estimator.simulate import measure
    from llama_factory_ext.estimator.terms import activation_parts, static_parts

    kw = {"quantization_bit": 4, "bf16": True, "cutoff_len": 128, "disable_gradient_checkpointing": True}
    after, predicted = {}, {}
    for kbit in (False, True):
        for layers, path in bf16_llamas.items():
            model, _ = _host_model(path, torch.bfloat16, **{k: v for k, v in kw.items() if k != "bf16"})
            if kbit:
                for p in model.parameters():
                    if p.dtype in (torch.float16, torch.bfloat16) and p.__class__.__name__ != "Params4bit":
                        p.data = p.data.to(torch.float32)
            model.train()
            spec = spec_from_recipe(recipe(path, **kw)).replace(kbit_fp32=kbit)
            st = static_parts(spec)
            params = {id(p): p for p in model.parameters()}.values()
            assert st["weights"] + st["master"] == sum(p.numel() * p.element_size() for p in params)
            after[kbit, layers] = measure(model, 2, 128, model.config.vocab_size, amp=True)["after_forward"]
            act = activation_parts(spec, mask_bytes=4)
            predicted[kbit, layers] = (act["per_layer"], act["fwd"] + st["cache"])
        per_layer = after[kbit, 2] - after[kbit, 1]
        assert abs(predicted[kbit, 2][0] / per_layer - 1) < 0.05, (kbit, predicted[kbit, 2][0], per_layer)
    assert after[True, 2] > 1.2 * after[False, 2]
    added, modelled = after[True, 1] - after[False, 1], predicted[True, 1][1] - predicted[False, 1][1]
    assert abs(modelled / added - 1) < 0.10, (modelled, added)


def test_logit_bytes_follow_the_installed_transformers():
    """The loss path's bytes per logit, counted on a real step with the installed transformers, are what the
    estimator uses for it (benchmarks/count_logit_bytes.py; the same count gave 12 B with 5.6 and 5.8)."""
    import sys

    import transformers

    from conftest import REPO
    from llama_factory_ext.estimator.terms import logit_bytes

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from count_logit_bytes import count_bytes_per_logit
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    used, note = logit_bytes()
    assert count_bytes_per_logit() == pytest.approx(used, rel=0.02)
    assert transformers.__version__ in note
    assert logit_bytes("4.45.2")[0] == 16.0 and "newer than 5.8" in logit_bytes("5.9.0")[1]


FAST_CASES = [
    ("llama3_cls.yaml", {}), ("llama3_cls_layerwise.yaml", {}), ("llama3_cls_qlora.yaml", {}), ("llama3_sft.yaml", {}),
    ("llama3_sft_qlora.yaml", {}), ("llama3_sft.yaml", {"finetuning_type": "full"}),
    ("llama3_sft.yaml", {"lora_target": "q_proj,v_proj", "lora_rank": 16}),
    ("llama3_sft.yaml", {"model_name_or_path": "Qwen/Qwen2.5-7B"}),
    ("llama3_sft.yaml", {"model_name_or_path": "meta-llama/Llama-3.2-1B", "finetuning_type": "full"}),
    ("llama3_cls.yaml", {"finetuning_type": "full"}), ("llama3_sft_qlora.yaml", {"double_quantization": False}),
    ("llama3_sft.yaml", {"model_name_or_path": "mistralai/Mistral-7B-v0.1", "quantization_bit": 8}),
]


def test_fast_path_equals_the_meta_device_build(tmp_path, monkeypatch, tiny_llama):
    """The formula path gives the same spec (every parameter statistic, dims, knobs, peak) as the meta-device build
    with the host's own code (Llama-3, Qwen2, Mistral, Llama-3.2 built-in configs; the fp32 tiny Llama); unsupported
    builds (DoRA, freeze, a strategy it does not know) take the slow path."""
    import dataclasses

    from conftest import RECIPES

    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.host.keys import cached_host_args
    from llama_factory_ext.estimator.terms import compute

    from llama_factory_ext.host import keys as fast_mod

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(fast_mod, "SNAPSHOTS", tmp_path / "no-snapshots")  # a host the pack ships no snapshot for
    assert cached_host_args() is None
    said = []
    spec_from_recipe(RECIPES / "llama3_sft.yaml", progress=said.append)  # slow path; writes the host argument cache
    assert any("meta device" in s for s in said)
    assert cached_host_args() is not None
    knobs = ("batch_size", "seq_len", "grad_accum", "gpus", "gradient_checkpointing", "attention", "compute_bytes",
             "amp", "pure_bf16", "optim", "zero_stage", "quant_bits", "lora_dropout", "is_cls", "dims", "stage",
             "base_type", "strategy_names", "model_name")
    tiny = [(name, {"model_name_or_path": str(tiny_llama), **ov}) for name, ov in (
        ("tiny_cls.yaml", {}), ("tiny_sft.yaml", {"finetuning_type": "full", "bf16": True}),
        ("tiny_cls.yaml", {"quantization_bit": 4, "bf16": True}),
        ("tiny_sft.yaml", {"lora_target": "q_proj,down_proj", "lora_dropout": 0.1}))]
    for name, ov in FAST_CASES + tiny:
        slow = spec_from_recipe(RECIPES / name, overrides=ov, fast=False)
        fast = spec_from_recipe(RECIPES / name, overrides=ov)
        assert type(fast.model_args).__name__ == "SimpleNamespace", (name, ov)  # the formula path ran
        assert dataclasses.asdict(fast.params) == dataclasses.asdict(slow.params), (name, ov)
        assert [getattr(fast, k) for k in knobs] == [getattr(slow, k) for k in knobs], (name, ov)
        assert compute(fast).peak_bytes == compute(slow).peak_bytes
    for ov in ({"use_dora": True}, {"finetuning_type": "freeze"}, {"finetuning_type": ["lora", "train_norms"]}):
        spec = spec_from_recipe(RECIPES / "llama3_sft.yaml", overrides=ov)
        assert type(spec.model_args).__name__ != "SimpleNamespace", ov


def test_estimate_command_is_fast_from_the_first_run(tmp_path, workdir):
    """On a tested host (a shipped snapshot of its argument names) the first `estimate`, with an empty cache, imports
    neither torch nor transformers, peft or the host; it says when it reads the cls data for the label count, and
    the next run, which remembers that count, prints the same JSON without saying it."""
    code = ("import sys; from llama_factory_ext.cli import main; main(['estimate', 'llama3_cls.yaml', '--json']); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'llamafactory') if m in sys.modules), "
            "file=sys.stderr)")
    first = run_cli(["python", "-c", code], workdir, XDG_CACHE_HOME=str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "meta device" not in first.stderr and "reading the cls dataset" in first.stderr
    assert first.stderr.strip().endswith("[]"), first.stderr
    second = run_cli(["llamafactory-ext", "estimate", "llama3_cls.yaml", "--json"], workdir,
                     XDG_CACHE_HOME=str(tmp_path))
    assert second.returncode == 0 and "meta device" not in second.stderr and "reading the cls" not in second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert json.loads(first.stdout)["trainable_params"] == 83_910_656  # LoRA + a 6-label head (the bundled data)


def test_shipped_host_argument_snapshot_matches_the_installed_host(tmp_path):
    """The snapshot shipped for a tested host (with the transformers its install resolves) holds exactly the
    argument names and defaults the installed host has; the slow path would write the same file."""
    import importlib.metadata as md

    from llama_factory_ext.host import keys as fast

    shipped = fast.SNAPSHOTS / fast.cache_path().name
    tested = {"0.9.5": "5.6.0", "0.9.6.dev0": "5.8.0"}
    if tested.get(md.version("llamafactory")) != md.version("transformers"):
        pytest.skip(f"no snapshot shipped for llamafactory {md.version('llamafactory')} with transformers "
                    f"{md.version('transformers')}")
    assert shipped.is_file(), f"{shipped.name} missing: run scripts/snapshot_host_args.py with this venv"
    assert json.loads(shipped.read_text())["defaults"] == fast.host_args_now()
    written = fast.write_host_args_cache(tmp_path / "again.json")
    assert json.loads(written.read_text()) == json.loads(shipped.read_text())


def test_advice_can_be_followed():
    """ZeRO options name config files that exist in the installed pack (and estimate as ZeRO-3 when used), changes
    read as recipe lines and `--gpus N`; the largest batch stops at the recipe's effective batch; batch 0 is said."""
    from pathlib import Path

    from llama_factory_ext.estimator import estimate_recipe

    full = recipe(LLAMA3_8B, finetuning_type="full", bf16=True, cutoff_len=2048, per_device_train_batch_size=8)
    est = estimate_recipe(full, gpus=2, gpu="H100")
    zero = [o for o in est.advice if "deepspeed" in o.changes]
    assert zero
    for o in zero:
        path = Path(o.changes["deepspeed"])
        assert path.is_file() and "site-packages" in str(path) and "_recipes/deepspeed" in str(path)
        assert f"deepspeed: {path}" in o.changes_text()
        if "gpus" in o.changes:
            assert f"--gpus {o.changes['gpus']}" in o.changes_text()
    used = estimate_recipe({**full, "deepspeed": zero[0].changes["deepspeed"]}, gpus=2, gpu="H100", advice=False)
    assert used.spec.zero_stage == 3
    assert "=" not in est.render().split("what to change")[1].split("note:")[0].replace("FORCE_TORCHRUN=1", "")
    assert est.max_batch == 0 and "even batch 1 does not fit" in est.render()
    small = estimate_recipe(recipe(LLAMA3_8B, bf16=True, cutoff_len=512, per_device_train_batch_size=2,
                                   gradient_accumulation_steps=4), gpu="H100")
    assert small.max_batch == small.batch_cap == 8 and "larger is never needed" in small.render()


# ---------------------------------------------------------------- CLI, hook, plugins

def test_cli_json_and_exit_codes(tiny_llama, workdir):
    r = run_cli(["llamafactory-ext", "estimate", "tiny_sft_rslora.yaml", f"model_name_or_path={tiny_llama}",
                 "--gpu-memory", "1MiB", "--json"], workdir)
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert set(data["components"]) >= {"weights", "trainable master weights", "gradients", "optimizer states",
                                       "activations", "logits and loss", "quantization constants",
                                       "framework overhead"}
    assert data["verdict"] == "does not fit" and data["peak_bytes"] == pytest.approx(
        sum(data["components"].values()), abs=len(data["components"]))
    assert data["upper_bytes"] > data["peak_bytes"] and data["upper_reasons"]
    bad = run_cli(["llamafactory-ext", "estimate", "tiny_sft_rslora.yaml", "model_name_or_path=nobody/unknown-7b"],
                  workdir)
    assert bad.returncode == 2 and "model_name_or_path" in bad.stderr and "Traceback" not in bad.stderr
    typo = run_cli(["llamafactory-ext", "estimate", "tiny_sft_rslora.yaml", f"model_name_or_path={tiny_llama}",
                    "memory_check=maybe"], workdir)
    assert typo.returncode == 2 and "memory_check" in typo.stderr


def test_memory_check_off_skips(tiny_llama, capsys):
    from llama_factory_ext.api import HostArgs
    from llama_factory_ext.recipe import prepare
    from llama_factory_ext.estimator import plugin
    from llama_factory_ext.estimator.build import parse_host_args

    for mode, expect in (("off", False), ("warn", True)):
        run = prepare(recipe(tiny_llama, memory_check=mode), data=False)
        run.parsed = HostArgs(*parse_host_args(run, None))
        plugin.lfx_before_training(run)
        assert ("memory estimate" in capsys.readouterr().err) is expect


def test_plugin_memory_terms_are_added(tiny_llama):
    pytest.importorskip("lfx_example_plugin")
    from llama_factory_ext.estimator import estimate_recipe

    est = estimate_recipe(recipe(tiny_llama, finetuning_type="lora+train_norms"))
    names = [c.name for c in est.components]
    assert "example: norm weights fp32 copy" in names
    assert "train_norms" in est.spec.strategy_names


@pytest.mark.parametrize("memory,mode,expect", [
    (1 << 20, "error", "raises"),
    (1 << 20, "warn", "table"),
    (1 << 30, "error", "raises"),  # likely peak (0.75 GiB context + the tiny model) fits, upper bound does not
    (1 << 30, "warn", "borderline"),
    (80 << 30, "error", "fits"),
])
def test_hook_verdicts_with_a_gpu(tiny_llama, monkeypatch, capsys, memory, mode, expect):
    """Only the GPU query is mocked: CUDA available with ``memory`` bytes."""
    import types

    import torch

    from llama_factory_ext.api import HostArgs, UserError
    from llama_factory_ext.recipe import prepare
    from llama_factory_ext.estimator import plugin
    from llama_factory_ext.estimator.build import parse_host_args

    run = prepare(recipe(tiny_llama, memory_check=mode), data=False)
    run.parsed = HostArgs(*parse_host_args(run, None))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(total_memory=memory, name="TestGPU"))
    if expect == "raises":
        with pytest.raises(UserError) as err:
            plugin.lfx_before_training(run)
        text = err.value.render()
        verdict = "borderline" if memory == 1 << 30 else "does not fit"
        assert f"memory_check: {verdict}" in text and "on TestGPU" in text and "memory_check: warn" in text
        return
    plugin.lfx_before_training(run)
    out = capsys.readouterr().err
    if expect == "table":
        assert "verdict: DOES NOT FIT" in out and "logits and loss" in out and "upper bound" in out
    elif expect == "borderline":
        assert "verdict: BORDERLINE" in out and "allocator slack up to 18% for lora" in out
    else:
        assert "TestGPU: fits" in out


def test_seq_from_data_uses_host_tokenization(tiny_llama, workdir):
    """--seq-from-data: the longest tokenized training sample replaces cutoff_len when it is shorter."""
    base = ["llamafactory-ext", "estimate", "tiny_sft_rslora.yaml", f"model_name_or_path={tiny_llama}",
            "cutoff_len=4096", "--json"]
    plain = run_cli(base, workdir)
    data = run_cli(base + ["--seq-from-data"], workdir)
    assert plain.returncode == 0 and data.returncode == 0, data.stderr
    plain, data = json.loads(plain.stdout), json.loads(data.stdout)
    assert plain["seq_len"] == 4096 and 0 < data["seq_len"] < 4096
    assert data["peak_bytes"] < plain["peak_bytes"]
    assert any("sequence length from the data" in n for n in data["notes"])


def test_cls_label_count_read_from_the_recipe_data(tiny_llama):
    """Without label_names the estimator reads the label set the cls stage will build (6 labels here)."""
    from conftest import RECIPES

    from llama_factory_ext.estimator import estimate_recipe

    est = estimate_recipe(RECIPES / "tiny_cls.yaml", overrides={"model_name_or_path": str(tiny_llama)}, advice=False)
    hidden = 64
    lora_only = estimate_recipe(RECIPES / "tiny_cls.yaml", advice=False,
                                overrides={"model_name_or_path": str(tiny_llama), "label_names": ["a", "b"]})
    assert est.to_json()["trainable_params"] - lora_only.to_json()["trainable_params"] == (6 - 2) * hidden
    assert ", 6 labels)" in est.summary_line()  # the line printed when a cls run starts


def test_validate_and_estimate_size_the_cls_head_alike():
    """`validate`'s layer-wise LR table and `estimate` take the label count from one function (6 labels here)."""
    from conftest import RECIPES

    from llama_factory_ext.estimator import estimate_recipe
    from llama_factory_ext.recipe.validate import validate_file

    path = RECIPES / "llama3_cls_layerwise.yaml"
    _, notes = validate_file(path)
    est = estimate_recipe(path, advice=False)
    assert est.spec.dims.num_labels == 6
    score = [n for n in notes if n.split()[1:2] == ["score"]]
    assert score and f"{4096 * 6:,}" in score[0], notes
    assert any(f"{est.spec.trainable_params:,} trainable parameters" in n for n in notes), notes


@pytest.mark.parametrize("gpus,nodes", [(8, 1), (4, 2)])
def test_model_states_equal_deepspeeds_own_estimators(gpus, nodes):
    """ZeRO-2/3 model states (full fine-tuning, with and without offload) equal what DeepSpeed's own
    estimate_zero2/3_model_states_mem_needs return for the same parameter counts, GPUs and nodes."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    from llama_factory_ext.estimator import estimate_recipe
    from llama_factory_ext.estimator.terms import static_parts

    def states(stage, offload_opt=False, offload_param=False):
        zero = {"stage": stage}
        if offload_opt:
            zero["offload_optimizer"] = {"device": "cpu"}
        if offload_param:
            zero["offload_param"] = {"device": "cpu"}
        est = estimate_recipe(recipe(LLAMA3_8B, finetuning_type="full", bf16=True,
                                     deepspeed={"zero_optimization": zero}), gpus=gpus, nodes=nodes, advice=False)
        st = static_parts(est.spec)
        return st["weights"] + st["master"] + st["grads"] + st["states"], est.spec.params

    total, params = states(2)
    _, ds = estimate_zero2_model_states_mem_needs(params.total_params, gpus, nodes, cpu_offload=False)
    assert total == pytest.approx(ds, abs=8)
    total, _ = states(2, offload_opt=True)
    _, ds = estimate_zero2_model_states_mem_needs(params.total_params, gpus, nodes, cpu_offload=True)
    assert total == pytest.approx(ds, abs=8)
    for opt, par in ((False, False), (True, False), (True, True)):
        total, _ = states(3, offload_opt=opt, offload_param=par)
        _, ds, _ = estimate_zero3_model_states_mem_needs(params.total_params, params.largest_module_params, gpus, nodes,
                                                         cpu_offload=opt, cpu_offload_params=par)
        assert total == pytest.approx(ds, abs=8), (opt, par)


def test_estimate_cli_reads_an_accelerate_config(workdir, tmp_path):
    cfg = tmp_path / "fsdp.yaml"
    cfg.write_text("distributed_type: FSDP\nnum_processes: 16\nnum_machines: 2\nmixed_precision: bf16\n"
                   "fsdp_config:\n  fsdp_sharding_strategy: FULL_SHARD\n  fsdp_use_orig_params: true\n")
    path = write_yaml(tmp_path / "r.yaml", recipe(LLAMA3_8B, finetuning_type="full", bf16=True))
    r = run_cli(["llamafactory-ext", "estimate", path, "--accelerate-config", cfg, "--json", "--no-advice"],
                cwd=workdir)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["gpus"], out["nodes"], out["engine"]) == (8, 2, "FSDP FULL_SHARD")
    assert out["allocated_peak_bytes"] < out["reserved_peak_bytes"] < out["peak_bytes"] < out["upper_bytes"]
    bad = run_cli(["llamafactory-ext", "estimate", path, "--accelerate-config", tmp_path / "missing.yaml"], cwd=workdir)
    assert bad.returncode != 0 and "--accelerate-config" in bad.stderr and "Traceback" not in bad.stderr


def test_failed_estimate_on_a_host_only_run_gives_no_pack_advice(capsys):
    """A plain host recipe gets one line when no estimate is possible, without `--config` / `memory_check`
    (which do not apply to it); a pack run keeps the memory_check hint."""
    from types import SimpleNamespace as NS

    from llama_factory_ext.api import HostArgs, Run
    from llama_factory_ext.estimator import plugin

    def said(host_only: bool) -> str:
        parsed = HostArgs(NS(model_name_or_path="example-org/no-such-model"), NS(), NS(do_train=True), NS(stage="sft"))
        plugin.lfx_before_training(run=Run(parsed=parsed, extras={"host_only": True} if host_only else {}))
        return capsys.readouterr().err

    plain = said(True)
    assert plain.startswith("llama-factory-ext: no memory estimate for this model (") and "example-org/no-such-model" in plain
    assert len(plain.splitlines()) == 1 and "--config" not in plain and "memory_check" not in plain
    assert "set memory_check: off to skip it" in said(False)
