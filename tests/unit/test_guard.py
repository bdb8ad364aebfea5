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


# ----------------------------------------------------------------- the guard's logic, without transformers

@pytest.fixture()
def guard_env(monkeypatch):
    """``transformers.TrainerCallback`` is all the guard imports: a plain base class stands in for it; trainer state,
    control and arguments are plain objects with the fields the guard reads and sets."""
    import sys
    import types

    fake = types.ModuleType("transformers")
    fake.TrainerCallback = type("TrainerCallback", (), {})
    monkeypatch.setitem(sys.modules, "transformers", fake)

    def control():
        return types.SimpleNamespace(should_training_stop=False, should_save=True, should_evaluate=True)

    def args(**kw):
        base = dict(output_dir="/nonexistent/lfx", learning_rate=1e-4, max_grad_norm=1.0, fp16=False,
                    warmup_ratio=0.0, warmup_steps=0, should_save=True)
        return types.SimpleNamespace(**{**base, **kw})

    return types.SimpleNamespace(control=control, args=args, state=lambda step=0: types.SimpleNamespace(global_step=step))


def _feed(guard, env, logs, args=None):
    args = args or env.args()
    control = env.control()
    for i, log in enumerate(logs):
        guard.on_log(args, env.state(i + 1), control, logs=log)
    return control


def test_loss_factor_and_grad_norm_limit_come_from_the_recipe(guard_env):
    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import GuardArgs, make_callback

    strict = Run(settings={"training_guard": GuardArgs(training_guard_loss_factor=2.0, training_guard_grad_norm=10.0)})
    guard = make_callback(strict, None)
    control = _feed(guard, guard_env, [{"loss": 2.0}, {"loss": 3.9}, {"loss": 4.1}])
    assert guard.step == 3 and "rose to 4.1, over 2 x its first value 2" in guard.reason
    assert control.should_training_stop and not control.should_save and not control.should_evaluate
    guard = make_callback(strict, None)
    _feed(guard, guard_env, [{"loss": 2.0, "grad_norm": 9.0}, {"loss": 2.0, "grad_norm": 11.0}])
    assert guard.step == 2 and "gradient norm exploded to 11 (limit training_guard_grad_norm: 10)" in guard.reason
    default = make_callback(Run(), None)  # 5 x and 1e4 by default
    control = _feed(default, guard_env, [{"loss": 2.0}, {"loss": 9.9, "grad_norm": 9e3}])
    assert default.reason is None and not control.should_training_stop


def test_the_first_reason_is_kept(guard_env):
    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import make_callback

    guard = make_callback(Run(), None)
    _feed(guard, guard_env, [{"loss": 1.0}, {"loss": float("nan")}, {"loss": 1.0, "grad_norm": float("inf")}])
    assert guard.reason == "the training loss is nan" and guard.step == 2


def test_fp16_overflow_is_tolerated_for_two_logs_in_a_row(guard_env):
    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import make_callback

    inf = float("inf")
    fp16 = guard_env.args(fp16=True)
    guard = make_callback(Run(), None)
    _feed(guard, guard_env, [{"grad_norm": inf}, {"grad_norm": inf}, {"grad_norm": 2.0}, {"grad_norm": inf}], fp16)
    assert guard.reason is None  # the count starts again after a finite norm
    _feed(guard, guard_env, [{"grad_norm": inf}, {"grad_norm": inf}], fp16)
    assert guard.reason == "the gradient norm is inf"
    bf16 = make_callback(Run(), None)
    _feed(bf16, guard_env, [{"grad_norm": inf}])
    assert bf16.reason == "the gradient norm is inf"


def test_collapse_needs_one_class_and_a_worse_eval_loss(guard_env):
    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import make_callback

    args = guard_env.args()
    guard = make_callback(Run(), None)
    one_class = {"eval_pred_classes": 1, "eval_gold_classes": 3}
    for loss in (1.0, 1.4):  # one class but not 1.5 x worse than the best: goes on
        control = guard_env.control()
        guard.on_evaluate(args, guard_env.state(), control, metrics={"eval_loss": loss, **one_class})
        assert guard.reason is None and not control.should_training_stop
    control = guard_env.control()
    guard.on_evaluate(args, guard_env.state(9), control, metrics={"eval_loss": 1.6, **one_class})
    assert "collapsed to predicting one class" in guard.reason and "best so far 1" in guard.reason
    assert guard.step == 9 and control.should_training_stop
    guard = make_callback(Run(), None)
    guard.on_evaluate(args, guard_env.state(), guard_env.control(), metrics={"eval_loss": float("inf")})
    assert guard.reason == "the evaluation loss is inf"


def test_a_cls_loss_flag_trips_before_the_logged_loss(guard_env):
    import types

    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import make_callback

    guard = make_callback(Run(), None, loss_flag=types.SimpleNamespace(nonfinite=lambda: True))
    _feed(guard, guard_env, [{"loss": 1.0}])
    assert guard.reason == "the training loss became non-finite (NaN or inf)"


def test_failure_message_names_the_last_checkpoint_and_advice(guard_env, tmp_path):
    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import failure_message, make_callback

    for step in (5, 20, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    args = guard_env.args(output_dir=str(tmp_path), learning_rate=2e-4, fp16=True, max_grad_norm=0.5, warmup_steps=10)
    guard = make_callback(Run(), None)
    _feed(guard, guard_env, [{"loss": float("inf")}], args)
    msg = failure_message(guard, args)
    assert msg.startswith("training guard stopped the run at step 1: the training loss is inf.")
    assert f"The last good checkpoint is {tmp_path / 'checkpoint-20'}" in msg
    assert "a lower learning_rate (now 0.0002; try 2e-05)" in msg and "bf16: true instead of fp16" in msg
    assert "max_grad_norm: 1.0" not in msg and "warmup_ratio" not in msg  # clipping and warmup already set
    plain = guard_env.args(output_dir=str(tmp_path / "none"), max_grad_norm=5.0)
    msg = failure_message(guard, plain)
    assert "No checkpoint was saved" in msg and "max_grad_norm: 1.0 (gradient clipping; now 5.0)" in msg
    assert "warmup_ratio: 0.1" in msg and "fp16" not in msg


def test_host_stage_guard_marks_the_folder_failed_and_raises_at_train_end(guard_env, tmp_path):
    import json

    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import GuardArgs, guard_callbacks

    args = guard_env.args(output_dir=str(tmp_path))
    (cb,) = guard_callbacks(Run())
    cb.on_train_end(args, guard_env.state(), guard_env.control())  # healthy: nothing happens
    assert list(tmp_path.iterdir()) == []
    _feed(cb, guard_env, [{"loss": 1.0}, {"loss": float("nan")}], args)
    with pytest.raises(UserError, match="training guard stopped the run at step 2"):
        cb.on_train_end(args, guard_env.state(2), guard_env.control())
    status = json.loads((tmp_path / "run_status.json").read_text())
    assert (status["status"], status["step"], status["reason"]) == ("failed", 2, "the training loss is nan")
    assert guard_callbacks(Run(settings={"training_guard": GuardArgs(training_guard=False)})) == []
