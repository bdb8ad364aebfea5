"""The read side of LLaMA-Factory: the capability gate (``gate``), the host's argument names (``keys``), the host
functions the pack calls (``calls``, which loads the host) and version rules (``compat``). Nothing here imports the
pack above it; what the host calls back lives in ``llama_factory_ext.patches``."""

# transitional: old ``llama_factory_ext.host`` names, while the package's modules move to the new homes
_MOVED = {
    "check_host": "gate", "host_version": "gate", "tested_host": "gate", "host_warnings": "gate", "unwrapped": "gate",
    "gate_message": "gate", "signature_problem": "gate", "HOST_STAGES": "gate", "TESTED_VERSIONS": "gate",
    "SUPPORTED_TEXT": "gate", "check_webui": "gate", "FA2_BROKEN_TRANSFORMERS": "compat", "fa2_warning": "compat",
    "host_arg_names": "keys", "train_arg_classes": "calls", "load_tokenizer": "calls", "load_config": "calls",
    "find_all_linear_modules": "calls", "get_dataset_module": "calls", "patch_config": "calls",
    "prepare_model_for_training": "calls", "dataset_attrs": "calls", "parse_train_args_only": "calls",
    "layernorm_names": "calls", "init_adapter_is_wrapped": "calls", "get_template": "calls", "plot_loss": "calls",
}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_MOVED[name]}"), name)
    raise AttributeError(name)
