"""Every key a built-in plugin owns carries help text (shown by LLaMA Board's pack section and `plugins`)."""

from llama_factory_ext import board, plugins


def test_every_builtin_key_has_a_description():
    owners = [*plugins.strategies().values(), *plugins.stages().values()]
    models = [o.args_model for o in owners if o.args_model] + list(plugins.key_groups().values())
    fields = {k: f for m in models for k, f in m.model_fields.items()}
    assert {"layerwise_lr_decay", "label_names", "memory_check", "training_guard"} <= set(fields)
    assert [k for k, f in fields.items() if not (f.description or "").strip()] == []


def test_board_fields_carry_the_help():
    helps = {f.key: f.help for f in board.pack_fields()}
    assert "decay" in helps["layerwise_lr_decay"] and helps["training_guard_grad_norm"]
