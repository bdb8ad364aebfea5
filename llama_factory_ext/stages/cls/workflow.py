"""The cls stage's workflow: check data, build model, train / evaluate / predict, save a reloadable run."""

from __future__ import annotations

import os

from ...host import calls as host
from .data import ClsData, load_cls_data
from .model import apply_cls_adapter, head_module_names, load_cls_model, trainable_names
from .encoding import encode
from .saved_run import quantization_dict, write_manifest
from .outputs import fit_calibration, saved_calibration, write_calibration, write_type_outputs
from .args import METRICS


def label_column(examples, labels: list[str], problem_type: str = "single_label", mean: float = 0.0,
                 std: float = 1.0) -> list:
    """What the model learns per row: the label's id (single_label, -100 without one), a 0/1 row over the labels
    (multi_label) or the standardised score (regression)."""
    index = {lab: i for i, lab in enumerate(labels)}
    if problem_type == "multi_label":
        return [[1.0 if lab in set(e.labels or ()) else 0.0 for lab in labels] for e in examples]
    if problem_type == "regression":
        return [(e.score - mean) / std if e.score is not None else 0.0 for e in examples]
    return [index.get(e.label, -100) if e.label is not None else -100 for e in examples]


def to_dataset(examples, tokenizer, labels: list[str], cutoff_len: int, template, data: ClsData = None):
    from datasets import Dataset

    pairs = [e.text_pair for e in examples]
    enc = encode(tokenizer, [e.text for e in examples], pairs if any(p is not None for p in pairs) else None,
                 cutoff_len, template)
    enc["labels"] = (label_column(examples, labels) if data is None else
                     label_column(examples, labels, data.problem_type, data.score_mean, data.score_std))
    enc["length"] = [len(ids) for ids in enc["input_ids"]]
    return Dataset.from_dict(enc)


def run_cls(model_args, data_args, training_args, finetuning_args, generating_args, callbacks, run):
    """Check data, take the run folder (one run at a time), train / evaluate / predict; the folder's
    ``run_status.json`` says running, finished or failed. A run without training needs a trained head (refused
    up front otherwise: ``finished`` must not stand for predictions of a random head)."""
    from ...api import UserError
    from ...runfolder import RunLock, mark_failed, read_status, write_status
    from ...safeio import is_write_fault, os_error_text
    from .trained_head import trained_head_problem

    data: ClsData = load_cls_data(data_args, training_args, run.stage_opts)  # raises UserError before anything is written
    best_metric_setup(training_args, data.problem_type, run)
    out = training_args.output_dir
    model_path = model_args.model_name_or_path
    if os.path.isdir(model_path) and os.path.realpath(model_path) == os.path.realpath(out):
        raise UserError(f"key `output_dir`: {out} is the base model folder (model_name_or_path); pick another output_dir")
    if not training_args.do_train:
        problem = trained_head_problem(model_path, model_args.adapter_name_or_path)
        if problem:
            raise UserError(problem)
    lock = RunLock(out).acquire()
    try:
        from ...quiet import config_printed_once, import_bitsandbytes_quietly

        _prepare_folder(out, model_args, data_args, training_args, finetuning_args, run)
        import_bitsandbytes_quietly()
        with config_printed_once():
            _run_cls_locked(model_args, data_args, training_args, finetuning_args, callbacks, run, data)
        write_status(out, "finished")
    except BaseException as exc:
        status = read_status(out) or {}
        fault = is_write_fault(exc)
        reason = exc.render() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        if lock.held and status.get("status") == "running" and status.get("pid") == os.getpid():
            mark_failed(out, reason)
        if fault:  # disk full / read-only while saving: one message, not a traceback
            where = getattr(exc, "filename", None) or out
            text = os_error_text(exc) if isinstance(exc, OSError) else f"{str(exc).strip().splitlines()[0]}; free space or pick another folder"
            raise UserError(f"key `output_dir`: the run stopped writing {where}: {text}") from exc
        raise
    finally:
        lock.release()


def best_metric_setup(training_args, problem_type: str, run) -> None:
    """Refuse a ``metric_for_best_model`` this problem type does not report (before any weights load); MAE and
    RMSE are better when lower unless ``greater_is_better`` says otherwise."""
    from ...api import UserError
    from .args import LOWER_IS_BETTER, metric_problem

    name = getattr(training_args, "metric_for_best_model", None)
    problem = metric_problem(name, problem_type)
    if problem:
        raise UserError(problem)
    if not name:
        return
    bare = name.removeprefix("eval_")
    if bare in LOWER_IS_BETTER and "greater_is_better" not in getattr(run, "raw_args", {}):
        training_args.greater_is_better = False


def run_inputs(model_args, data_args, training_args, finetuning_args, run) -> dict:
    """The path-valued host keys this run reads (for :func:`~llama_factory_ext.runfolder.clear_previous_run`), as
    parsed by the host, with the datasets it names (``test_dataset`` included)."""
    from ...runfolder import DATASET_KEYS, INPUT_KEYS

    inputs = {}
    for key in INPUT_KEYS + DATASET_KEYS[:2]:
        for args in (model_args, data_args, training_args, finetuning_args):
            value = getattr(args, key, None)
            if value is not None:
                inputs[key] = value
                break
    inputs["test_dataset"] = getattr(run.stage_opts, "test_dataset", None)
    return inputs


def _prepare_folder(out: str, model_args, data_args, training_args, finetuning_args, run) -> None:
    """Clear a previous run's outputs (overwrite_output_dir; refused if the run reads any of them), refuse to
    silently resume a finished run, resume only from a complete checkpoint, mark the folder running."""
    from ...api import UserError
    from ...runfolder import clear_previous_run, read_status, usable_checkpoint, write_status

    if not training_args.do_train:
        return
    if getattr(training_args, "overwrite_output_dir", False):
        clear_previous_run(out, run_inputs(model_args, data_args, training_args, finetuning_args, run))
    elif training_args.resume_from_checkpoint and "resume_from_checkpoint" not in run.raw_args:
        status = read_status(out)
        finished = (status or {}).get("status") == "finished" or (status is None and os.path.exists(os.path.join(out, "cls_run.json")))
        if finished:
            raise UserError(
                f"key `output_dir`: {out} holds a finished run; set overwrite_output_dir: true to replace it (its outputs "
                f"are removed first), pick a new output_dir, or set resume_from_checkpoint to continue one of its checkpoints"
            )
    if training_args.resume_from_checkpoint:
        training_args.resume_from_checkpoint = usable_checkpoint(out, training_args.resume_from_checkpoint)
    write_status(out, "running")


def _run_cls_locked(model_args, data_args, training_args, finetuning_args, callbacks, run, data: ClsData):
    import numpy as np

    from ... import guard as training_guard
    from ...api import UserError
    from .report import write_predictions, write_report
    from ...runfolder import mark_failed
    from .trained_head import NO_TRAINED_HEAD
    from .trainer import (ClsCollator, ClsTrainer, TypeMetrics, class_weights_for, compute_metrics, pos_weights_for,
                          save_cls_extras)

    opts = run.stage_opts
    labels = data.labels
    ptype = data.problem_type
    tokenizer = host.load_tokenizer(model_args)["tokenizer"]
    model = load_cls_model(model_args, finetuning_args, labels, tokenizer, is_trainable=training_args.do_train,
                           problem_type=ptype)
    heads = head_module_names(model)
    head_loaded = getattr(model, "lfx_head_loaded", False)
    if training_args.do_train:
        model = apply_cls_adapter(model, model_args, finetuning_args, run)
    elif model_args.adapter_name_or_path:  # evaluate / predict with a trained cls adapter
        from peft import PeftModel

        from .saved_run import load_head_file

        model = PeftModel.from_pretrained(model, model_args.adapter_name_or_path[-1])
        saved = getattr(model.peft_config.get("default"), "modules_to_save", None) or []
        head_loaded = (load_head_file(model, model_args.adapter_name_or_path[-1]) or head_loaded
                       or any(str(m).split(".")[-1] in heads for m in saved))
    if not training_args.do_train and not head_loaded:  # e.g. a hub model id the files could not tell about
        raise UserError(f"key `do_train`: false evaluates and predicts with a trained classification head, but "
                        f"{model_args.adapter_name_or_path or model_args.model_name_or_path} has none (it would be "
                        f"randomly initialised); {NO_TRAINED_HEAD}")
    training_args.remove_unused_columns = False
    if training_args.label_names is None:
        training_args.label_names = ["labels"]

    cutoff = data_args.cutoff_len
    train_ds = to_dataset(data.train, tokenizer, labels, cutoff, opts.cls_template, data) if data.train else None
    eval_ds = to_dataset(data.eval, tokenizer, labels, cutoff, opts.cls_template, data) if data.eval else None
    test_ds = to_dataset(data.test, tokenizer, labels, cutoff, opts.cls_template, data) if data.test else None
    label2id = {lab: i for i, lab in enumerate(labels)}
    if ptype == "multi_label":
        weights = pos_weights_for(opts.class_weights, labels, np.array(label_column(data.train, labels, ptype)))
    elif ptype == "regression":
        weights = None
    else:
        weights = class_weights_for(opts.class_weights, labels, [label2id[e.label] for e in data.train])
    type_metrics = None if ptype == "single_label" else TypeMetrics(ptype, labels, data.score_mean, data.score_std)

    trainer = ClsTrainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if training_args.do_eval or training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        data_collator=ClsCollator(tokenizer, problem_type=ptype),
        compute_metrics=type_metrics or compute_metrics,
        callbacks=callbacks,
        class_weights=weights,
        head_names=heads,
        labels=labels,
        length_buckets=opts.cls_length_buckets,
        problem_type=ptype,
        regression_loss=opts.cls_regression_loss,
    )
    out = training_args.output_dir
    manifest = dict(
        base_model=os.path.abspath(model_args.model_name_or_path)
        if os.path.exists(model_args.model_name_or_path) else model_args.model_name_or_path,
        adapter=finetuning_args.finetuning_type == "lora",
        finetuning_type=finetuning_args.finetuning_type,
        strategies=run.strategy_names,
        head_modules=heads,
        cutoff_len=cutoff,
        cls_template=opts.cls_template,
        pad_token_id=tokenizer.pad_token_id,
        datasets=data.sources,
        num_train=len(data.train), num_eval=len(data.eval), num_test=len(data.test),
        trainable_params=trainable_names(model) if training_args.do_train else [],
        quantization=quantization_dict(model),
        problem_type=ptype,
    )
    if ptype == "regression":
        manifest.update(score_mean=data.score_mean, score_std=data.score_std, regression_loss=opts.cls_regression_loss)

    guard = training_guard.make_callback(run, training_args, loss_flag=trainer) if training_args.do_train else None
    if guard is not None:
        trainer.add_callback(guard)

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        if guard is not None and guard.reason:
            message = training_guard.failure_message(guard, training_args)
            mark_failed(out, guard.reason, step=guard.step, message=message)
            raise UserError(message)
        trainer.save_model()
        manifest.update(fit_calibration(trainer, eval_ds, data, type_metrics))
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(out)
            write_manifest(out, **manifest)
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        if finetuning_args.plot_loss and trainer.is_world_process_zero():
            host.plot_loss(out, keys=["loss", "eval_loss"] + [f"eval_{m}" for m in METRICS[ptype][:2]])
    else:
        manifest.update(saved_calibration(model_args.adapter_name_or_path, ptype)
                        or fit_calibration(trainer, eval_ds, data, type_metrics))
        if type_metrics is not None and manifest.get("thresholds"):
            type_metrics.thresholds = np.array(manifest["thresholds"])
            type_metrics.temperature = manifest["temperature"]
        if trainer.is_world_process_zero():
            os.makedirs(out, exist_ok=True)
            save_cls_extras(model, out, heads, labels)
            tokenizer.save_pretrained(out)
            write_manifest(out, **manifest)

    if training_args.do_eval and eval_ds is not None:
        metrics = trainer.evaluate(eval_dataset=eval_ds, metric_key_prefix="eval")
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    if training_args.do_predict and test_ds is not None:
        pred = trainer.predict(test_ds, metric_key_prefix="predict")
        logits = np.asarray(pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions,
                            dtype=np.float64)
        if trainer.is_world_process_zero() and ptype != "single_label":
            write_type_outputs(out, data, logits, manifest)
        elif trainer.is_world_process_zero():
            from .calibration import apply_temperature

            probs = apply_temperature(logits, manifest.get("temperature", 1.0), "single")
            gold = [e.label for e in data.test]
            write_predictions(os.path.join(out, "predictions.jsonl"), [e.id for e in data.test], gold, probs, labels,
                              logits=logits)
            gold_ids = np.array([label2id[g] for g in gold])
            write_report(out, gold_ids, probs.argmax(-1), labels, title=os.path.basename(os.path.abspath(out)))
            write_calibration(out, manifest, "single", logits, gold_ids, data.test is not data.eval)
        trainer.log_metrics("predict", pred.metrics)
        trainer.save_metrics("predict", pred.metrics)

    if trainer.is_world_process_zero() and os.path.exists(os.path.join(out, "cls_run.json")):
        from .modelcard import write_model_card

        write_model_card(out, manifest, labels)  # replaces PEFT's boilerplate README.md
