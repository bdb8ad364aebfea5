"""The docs/plugins.md examples that need torch or a model, executed, registered as a plugin and exercised (the
others, and the check that every hook is documented and tested: tests/unit/test_hookspecs.py)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from llama_factory_ext import plugins
from llama_factory_ext.api import UserError
from llama_factory_ext.recipe import prepare

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "plugins.md").read_text()
HOST_KEYS = {"stage", "finetuning_type", "learning_rate", "model_name_or_path", "output_dir"}


def doc_example(hook: str) -> str:
    m = re.search(rf"^## `{hook}`\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert m, f"docs/plugins.md has no section for {hook}"
    blocks = re.findall(r"```python\n(.*?)```", m.group(1), re.S)
    assert blocks, f"section {hook} has no python example"
    return blocks[-1]


@pytest.fixture()
def plugin_from_doc():
    registered = []

    def load(hook: str):
        plugins.reset()
        mod = types.ModuleType(f"doc_example_{hook}")
        sys.modules[mod.__name__] = mod  # pydantic resolves annotations through the module
        exec(compile(doc_example(hook), f"docs/plugins.md:{hook}", "exec"), mod.__dict__)
        plugins.get_plugin_manager().register(mod, name=mod.__name__)
        registered.append(mod)
        return mod

    yield load
    plugins.reset()


def test_lfx_register_strategies_example(plugin_from_doc):
    plugin_from_doc("lfx_register_strategies")
    assert "frozen_embeddings" in plugins.strategies()
    run = prepare({"finetuning_type": ["full", "frozen_embeddings"], "frozen_embeddings_pattern": "embed"},
                  host_keys=HOST_KEYS)
    assert run.host_args == {"finetuning_type": "full"}
    assert run.opts("frozen_embeddings").frozen_embeddings_pattern == "embed"
    with pytest.raises(UserError, match="frozen_embeddings_pattern"):
        prepare({"finetuning_type": ["full", "frozen_embeddings"], "frozen_embeddings_pattern": ""}, host_keys=HOST_KEYS)
    # the model hook really changes a model
    import torch

    model = torch.nn.Module()
    model.embed_tokens = torch.nn.Embedding(4, 2)
    model.proj = torch.nn.Linear(2, 2)
    strategy, opts = run.strategies[0]
    strategy.on_model_loaded(model, opts, run)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["proj.weight", "proj.bias"]


def test_lfx_register_stages_example(plugin_from_doc, tmp_path, tiny_llama):
    plugin_from_doc("lfx_register_stages")
    assert "count_tokens" in plugins.stages()
    run = prepare({"stage": "count_tokens", "count_report": "c.json"}, host_keys=HOST_KEYS)
    assert run.stage.name == "count_tokens" and run.host_args == {"stage": "count_tokens"}
    ns = types.SimpleNamespace
    model_args = ns(model_name_or_path=str(tiny_llama), cache_dir=None, model_revision="main", hf_hub_token=None,
                    trust_remote_code=False, use_fast_tokenizer=True, split_special_tokens=False, add_tokens=None,
                    add_special_tokens=None, new_special_tokens_config=None, init_special_tokens="noise_init",
                    model_max_length=None, resize_vocab=False, image_max_pixels=None, image_min_pixels=None,
                    image_do_pan_and_scan=False, crop_to_patches=False, video_max_pixels=None, video_min_pixels=None,
                    video_fps=None, video_maxlen=None, use_audio_in_video=False, audio_sampling_rate=None,
                    use_kt=False, use_unsloth=False)
    try:
        run.stage.run_stage(model_args, None, ns(output_dir=str(tmp_path)), None, None, [], run)
    except (AttributeError, TypeError) as exc:  # host ModelArguments grew a field this stand-in lacks
        pytest.skip(f"host load_tokenizer needs the full ModelArguments: {exc}")
    assert (tmp_path / "c.json").exists()


