"""Count the causal-LM loss path's peak bytes per logit with the installed transformers (CPU, one real step).

Two 1-layer bf16 Llamas that differ only in vocabulary size run forward + backward under the estimator's
allocation counter; the difference of their peaks over b*s*(V1 - V2) is the bytes per logit. Prints the version,
the count and what ``estimator.terms.logit_bytes`` uses. Run it in each environment to check (docs/estimator.md).
"""

from __future__ import annotations

import json


def count_bytes_per_logit(batch: int = 2, seq: int = 128, vocabs=(512, 4608)) -> float:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llama_factory_ext.estimator.simulate import measure

    torch.set_num_threads(1)
    peaks = {}
    for vocab in vocabs:
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
        for name, p in model.named_parameters():  # one trainable fp32 Linear: gradients flow through the loss
            p.requires_grad_("q_proj" in name)
            if p.requires_grad:
                p.data = p.data.float()
        model.train()
        peaks[vocab] = measure(model, batch, seq, vocab, amp=True)["peak"]
    return (peaks[vocabs[1]] - peaks[vocabs[0]]) / (batch * seq * (vocabs[1] - vocabs[0]))


if __name__ == "__main__":
    import transformers

    from llama_factory_ext.estimator.terms import logit_bytes

    used, note = logit_bytes()
    print(json.dumps({"transformers": transformers.__version__, "counted_bytes_per_logit": count_bytes_per_logit(),
                      "estimator_bytes_per_logit": used, "note": note}))
