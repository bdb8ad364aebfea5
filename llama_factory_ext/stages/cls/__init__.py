"""``stage: cls``: sequence classification (AutoModelForSequenceClassification) inside LLaMA-Factory."""

import os

from ...api import Stage, UserError
from ...hookspecs import hookimpl
from ...runtime import fail
from .args import ClsArgs
from .layout import MANIFEST


def warmup_problems(host_args: dict) -> list[str]:
    """``warmup_steps: 0.1`` is a ratio only from transformers 5 on; 4.x would warm up for 0.1 steps."""
    steps = host_args.get("warmup_steps")
    if not isinstance(steps, float) or not 0 < steps < 1:
        return []
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf = version("transformers")
    except PackageNotFoundError:  # not installed here: the host cannot train anyway, and says so itself
        return []
    if not tf.split(".")[0].isdigit() or int(tf.split(".")[0]) >= 5:
        return []
    return [f"key `warmup_steps`: {steps} is read as a ratio of the total steps only by transformers >= 5 "
            f"(installed: {tf}); write `warmup_ratio: {steps}` instead"]


class ClsStage(Stage):
    name = "cls"
    label = "Sequence Classification"
    help = "sequence classification: text (+ pair) -> label, with accuracy / macro-F1, predictions and reports"
    args_model = ClsArgs

    def validate(self, opts, host_args, run):
        problems = []
        if run.base_type not in ("lora", "freeze", "full"):
            problems.append(f"key `finetuning_type`: the cls stage supports lora / cls_head / rslora, freeze and full, not {run.base_type}")
        if host_args.get("quantization_bit") is not None and run.base_type != "lora":
            problems.append(f"key `quantization_bit`: quantized models train with LoRA (cls_head), not {run.base_type}")
        if host_args.get("predict_with_generate"):
            problems.append("key `predict_with_generate`: the cls stage predicts labels, not text; remove the key")
        if host_args.get("packing") or host_args.get("neat_packing"):
            problems.append("key `packing`: the cls stage classifies one text per row; remove the key")
        problems += warmup_problems(host_args)
        if host_args.get("do_train", False) and not host_args.get("dataset"):
            problems.append("key `dataset`: the cls stage needs a training dataset when `do_train` is true")
        return problems + self.folder_problems(opts, host_args)

    def folder_problems(self, opts, host_args) -> list[str]:
        """What ``train`` would refuse about the run folder: an input that overwrite_output_dir would remove, or
        a run without training and without a trained head."""
        from ...runfolder import overwrite_conflicts
        from .trained_head import trained_head_problem

        if host_args.get("export_dir"):
            return []
        if not host_args.get("do_train", False):
            problem = trained_head_problem(host_args.get("model_name_or_path"), host_args.get("adapter_name_or_path"))
            return [problem] if problem else []
        out = host_args.get("output_dir")
        if not host_args.get("overwrite_output_dir") or not isinstance(out, str):
            return []
        return overwrite_conflicts(out, {**host_args, "test_dataset": getattr(opts, "test_dataset", None)})

    def check_data(self, opts, host_args, run):
        from .data import check_data

        return check_data(opts, host_args)

    def run_stage(self, model_args, data_args, training_args, finetuning_args, generating_args, callbacks, run):
        from .workflow import run_cls

        return run_cls(model_args, data_args, training_args, finetuning_args, generating_args, callbacks, run)

    def finished_run(self, path):
        return os.path.isfile(os.path.join(path, MANIFEST))

    def export(self, run):
        from .export import export_from_args

        try:
            return export_from_args(run.host_args)
        except UserError as err:
            fail(err)

    def export_note(self, run_dir):
        return (f"{run_dir} is a classification run ({MANIFEST}): exporting the merged classifier "
                "(AutoModelForSequenceClassification), as with `stage: cls`")

    def generation_refusal(self, run_dir):
        where = run_dir or "RUN_DIR"
        return (f"this is a classification run (stage: cls); chat and eval generate text. "
                f"Classify with `llamafactory-ext predict {where} --input texts.jsonl`, serve it with "
                f"`llamafactory-cli api` (POST /v1/classify), or export the merged "
                f"classifier: `llamafactory-ext export {where} --out DIR` (AutoModelForSequenceClassification)")

    def ui_results(self, output_dir):
        from .results import results_markdown

        return results_markdown(output_dir)

    def ui_host_keys(self):
        return {"eval_dataset": "evaluated after training: accuracy, macro-F1, confusion matrix"}

    def ui_train_args(self, args):
        from .results import ui_train_args

        return ui_train_args(args)

    def ui_eval_args(self, args, run_dirs):
        from .results import ui_eval_args

        return ui_eval_args(args, run_dirs)


@hookimpl
def lfx_register_stages(register):
    register(ClsStage())
