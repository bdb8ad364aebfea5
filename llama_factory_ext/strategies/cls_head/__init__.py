"""``cls_head``: LoRA on the body, the classification head trained fully (PEFT ``modules_to_save``)."""

from ...api import Strategy
from ...hookspecs import hookimpl
from .args import ClsHeadArgs


class ClsHeadStrategy(Strategy):
    name = "cls_head"
    formula_safe = True
    help = "cls stage: LoRA on the body (never on the head), the classification head trained fully via modules_to_save"
    base = "lora"
    compatible_bases = ("lora",)
    stages = ("cls",)
    args_model = ClsHeadArgs

    def validate(self, opts, host_args, run):
        problems = []
        target = host_args.get("lora_target", "all")
        if isinstance(target, str):
            names = [t.strip() for t in target.split(",")]
        else:  # a list of names; another type is named by the host's type check
            names = [t.strip() for t in target if isinstance(t, str)] if isinstance(target, (list, tuple)) else []
        heads = {"score", "classifier"} & set(names)
        if heads:
            problems.append(
                f"key `lora_target`: {', '.join(sorted(heads))} is the classification head, which cls_head trains "
                "fully (modules_to_save); remove it from lora_target"
            )
        return problems

    def rewrite_args(self, opts, host_args, run):
        host_args["finetuning_type"] = "lora"
        host_args.setdefault("lora_target", "all")


@hookimpl
def lfx_register_strategies(register):
    register(ClsHeadStrategy())
