"""guard: the training guard's keys and its logic on logged losses, gradient norms and evaluations."""

from __future__ import annotations

import pytest

from llama_factory_ext.api import UserError


def test_guard_keys_are_pack_keys(host_keys):
    from llama_factory_ext.recipe import prepare

    run = prepare({"training_guard": False, "training_guard_loss_factor": 3}, data=False, host_keys=host_keys)
    assert run.settings["training_guard"].training_guard is False and "training_guard" not in run.host_args
    with pytest.raises(UserError, match="training_guard_loss_factor"):
        prepare({"training_guard_loss_factor": 0.5}, data=False, host_keys=host_keys)
