"""Count the bytes one real training step allocates on the CPU (TorchDispatchMode), to check the activation model.

``simulate_spec(spec)`` builds a scaled-down model of the recipe's architecture (same layer structure, hidden
sizes divided by a factor, 1 and 2 layers), runs forward + backward under the counter with the recipe's
precision, attention, checkpointing and adapters, and returns measured vs predicted bytes for the same shapes.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class AllocCounter(TorchDispatchMode):
    """Live bytes of storages created inside the mode; ``peak`` is the maximum over its lifetime."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set = set()

    def _free(self, key, n):
        self._seen.discard(key)
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                st = t.untyped_storage()
                key = st.data_ptr()
                n = st.nbytes()
                if n == 0 or key in self._seen or key in inputs:  # views and in-place results are not new memory
                    continue
                self._seen.add(key)
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(st, self._free, key, n)
        return out

    def reset_peak(self):
        self.peak = self.live


@contextlib.contextmanager
def cuda_autocast_answer():
    """Make ``torch.is_autocast_enabled()`` (no device: CUDA's flag) answer for CPU autocast, so libraries that
    branch on it (PEFT's bitsandbytes LoRA layers) take their CUDA-AMP path in a CPU step."""
    real = torch.is_autocast_enabled
    torch.is_autocast_enabled = lambda *a: real(*a) if a else real("cpu")
    try:
        yield
    finally:
        torch.is_autocast_enabled = real


def _scaled_config(config, factor: int, layers: int, vocab: Optional[int]):
    cfg = config.__class__.from_dict(config.to_dict())
    cfg.hidden_size = config.hidden_size // factor
    cfg.intermediate_size = config.intermediate_size // factor
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cfg.head_dim = max(head_dim // factor, 4)
    cfg.num_hidden_layers = layers
    if vocab:
        cfg.vocab_size = vocab
    cfg.tie_word_embeddings = getattr(config, "tie_word_embeddings", False)
    return cfg


def _build_cpu_model(spec, cfg):
    """The scaled model on CPU, set up by the same adapter code as the estimate (no meta device)."""
    import copy

    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    from ..host import calls as host
    from .build import _apply_cls, _config_dtype

    torch.manual_seed(0)
    mapping = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING if spec.is_cls else MODEL_FOR_CAUSAL_LM_MAPPING
    cfg._attn_implementation = "eager" if spec.attention == "eager" else "sdpa"
    model = mapping[type(cfg)](cfg).to(_config_dtype(cfg))
    model_args = copy.deepcopy(spec.model_args)
    finetuning_args = copy.deepcopy(spec.finetuning_args)
    model_args.disable_gradient_checkpointing = not spec.gradient_checkpointing
    host.prepare_model_for_training(model, model_args)  # the host's GC (only layers with trainable params)
    if spec.is_cls:
        model = _apply_cls(model, model_args, finetuning_args, spec.run, [])
    else:
        model = host.init_adapter(cfg, model, model_args, finetuning_args, is_trainable=True)
    model.train()
    return model


def measure(model, batch: int, seq: int, vocab: int, amp: bool, is_cls: bool = False) -> dict:
    """Bytes allocated by one forward + backward: live after forward, peak over both."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    labels = torch.randint(0, max(getattr(model.config, "num_labels", 2), 2), (batch,)) if is_cls else ids.clone()
    mask = torch.ones_like(ids)
    if batch > 1:  # a padded row, as in real batches (SDPA then gets a mask)
        mask[-1, -8:] = 0
        if not is_cls:
            labels[-1, -8:] = -100
    counter = AllocCounter()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False)
    with counter, cuda_autocast_answer():
        with ctx:
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
        loss = out.loss
        del out
        after_forward = counter.live
        forward_peak = counter.peak
        loss.backward()
        del loss
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    return {"after_forward": after_forward, "forward_peak": forward_peak, "peak": counter.peak, "grads": grads}


def _layer_cache(spec, cfg) -> float:
    """Autocast's 16-bit copies of trainable fp32 Linear weights inside decoder layers."""
    from .terms import static_parts

    cache = static_parts(spec)["cache"]
    if cache and spec.params.head_trainable and not spec.is_cls:
        cache -= 2.0 * cfg.vocab_size * cfg.hidden_size
    return max(cache, 0.0)


def simulate_spec(spec, factor: Optional[int] = None, max_seq: int = 256) -> dict:
    """Measured vs predicted activation bytes for a scaled copy of ``spec`` (1 and 2 layers)."""
    from .build import load_model_config, model_dims, param_stats, with_host_args
    from .terms import activation_parts, static_parts

    spec = with_host_args(spec)
    torch.set_num_threads(1)
    config, _ = load_model_config(spec.model_name)
    if spec.is_cls:
        config.num_labels = max(spec.dims.num_labels, 2)
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = 0
    if factor is None:
        factor = max(1, config.hidden_size // 256)
    vocab = max(config.vocab_size // factor, 64)
    seq = min(spec.seq_len, max_seq)
    results = {}
    for layers in (1, 2):
        cfg = _scaled_config(config, factor, layers, vocab)
        model = _build_cpu_model(spec, cfg)
        small = spec.replace(dims=model_dims(cfg, spec.dims.num_labels), params=param_stats(model), seq_len=seq,
                             gpus=1, zero_stage=None, quant_bits=None)
        m = measure(model, spec.batch_size, seq, vocab, spec.amp, spec.is_cls)
        cast = bool(spec.params.lora_modules)
        act = activation_parts(small, mask_bytes=4 if cast else spec.compute_bytes)  # CPU dropout keeps a full mask
        st = static_parts(small)
        ga = small.grad_accum > 1
        predicted_fwd = act["fwd"] + act["logits"] + st["cache"] + (st["grads"] if ga else 0)
        predicted_peak = max(predicted_fwd, act["bwd"] + st["grads"])
        results[layers] = {"measured": m, "predicted_after_forward": act["fwd"] + st["cache"],
                           "predicted_peak": predicted_peak,
                           "predicted_per_layer": act["per_layer"] + _layer_cache(small, cfg) / max(layers, 1),
                           "hidden": cfg.hidden_size}
        del model
    one, two = results[1], results[2]
    measured_layer = two["measured"]["after_forward"] - one["measured"]["after_forward"]
    return {
        "factor": factor, "layers": 2, "batch": spec.batch_size, "seq": seq, "vocab": vocab,
        "hidden": two["hidden"],
        "measured_per_layer": measured_layer,
        "predicted_per_layer": two["predicted_per_layer"] if not spec.gradient_checkpointing else
        (4 if small.params.embed_bytes >= 4 else spec.compute_bytes) * two["hidden"] * spec.batch_size * seq,
        "measured_peak": two["measured"]["peak"],
        "predicted_peak": two["predicted_peak"],
        "measured_after_forward": two["measured"]["after_forward"],
        "predicted_after_forward": two["predicted_after_forward"],
    }
