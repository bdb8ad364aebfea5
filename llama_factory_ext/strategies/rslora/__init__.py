"""``rslora``: rank-stabilized LoRA (scaling alpha/sqrt(r)) on all linear layers, alpha = 2 x rank by default."""

from ...api import Strategy
from ...plugins import hookimpl
from .args import RsloraArgs


class RsloraStrategy(Strategy):
    name = "rslora"
    help = "LoRA with use_rslora on all linear layers except output/classification heads; lora_alpha defaults to 2 x lora_rank."
    base = "lora"
    bases = ("lora",)
    args_model = RsloraArgs

    def validate(self, opts, host_args, run):
        problems = []
        if host_args.get("use_rslora") is False:
            problems.append("key `use_rslora`: false contradicts strategy 'rslora'; remove the key")
        if host_args.get("use_dora"):
            problems.append("key `use_dora`: DoRA and strategy 'rslora' are not combined by this pack; pick one")
        rank = host_args.get("lora_rank", 8)
        if not isinstance(rank, int) or rank < 1:
            problems.append(f"key `lora_rank`: must be a positive integer, got {rank!r}")
        return problems

    def rewrite_args(self, opts, host_args, run):
        host_args["finetuning_type"] = "lora"
        host_args["use_rslora"] = True
        host_args.setdefault("lora_target", "all")
        rank = int(host_args.get("lora_rank", 8))
        host_args.setdefault("lora_rank", rank)
        host_args.setdefault("lora_alpha", 2 * rank)


@hookimpl
def lfx_register_strategies(register):
    register(RsloraStrategy())
