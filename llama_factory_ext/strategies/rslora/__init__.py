"""``rslora``: rank-stabilized LoRA (scaling alpha/sqrt(r)) on all linear layers, alpha = 2 x rank by default."""


from ...api import Strategy
from ...hookspecs import hookimpl
from ...runtime import report
from .args import RsloraArgs


# quantization_method -> bits the host can quantize to on the fly (QLoRA; needs a CUDA GPU at run time)
QUANTIZATION_BITS = {"bnb": (4, 8), "hqq": (1, 2, 3, 4, 5, 6, 8), "eetq": (8,)}


class RsloraStrategy(Strategy):
    name = "rslora"
    formula_safe = True
    help = "LoRA with use_rslora on all linear layers except output/classification heads; lora_alpha defaults to 2 x lora_rank."
    base = "lora"
    compatible_bases = ("lora",)
    args_model = RsloraArgs

    def validate(self, opts, host_args, run):
        problems = []
        if host_args.get("use_rslora") is False:
            problems.append("key `use_rslora`: false contradicts strategy 'rslora'; remove the key")
        if host_args.get("use_dora"):
            problems.append("key `use_dora`: DoRA and strategy 'rslora' are not combined by this pack; pick one")
        rank = host_args.get("lora_rank", 8)
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            problems.append(f"key `lora_rank`: must be a positive integer, got {rank!r}")
        alpha = host_args.get("lora_alpha")
        if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0):
            problems.append(f"key `lora_alpha`: must be a positive number, got {alpha!r}")
        bits = host_args.get("quantization_bit")
        if bits is not None:
            method = str(host_args.get("quantization_method", "bnb"))
            allowed = QUANTIZATION_BITS.get(method)
            if allowed is not None and bits not in allowed:
                problems.append(
                    f"key `quantization_bit`: {bits!r} is not available with quantization_method '{method}' "
                    f"(QLoRA with rslora: {', '.join(map(str, allowed))})"
                )
        return problems

    def rewrite_args(self, opts, host_args, run):
        host_args["finetuning_type"] = "lora"
        host_args["use_rslora"] = True
        host_args.setdefault("lora_target", "all")
        rank = int(host_args.get("lora_rank", 8))
        host_args.setdefault("lora_rank", rank)
        host_args.setdefault("lora_alpha", 2 * rank)

    def on_model_loaded(self, model, opts, run):
        if any(p.is_meta for p in model.parameters()):  # an estimate, not a training run
            return model
        summary = adapter_summary(model)
        if summary:
            report(f"rslora: {summary}")
        return model


def adapter_summary(model) -> str:
    """'N modules (names), r, alpha, scaling' of the model's LoRA layers, or '' without any."""
    rows = [(n.rsplit(".", 1)[-1], m.r["default"], m.lora_alpha["default"], m.scaling["default"])
            for n, m in model.named_modules() if isinstance(getattr(m, "scaling", None), dict) and "default" in m.scaling
            and hasattr(m, "lora_A")]
    if not rows:
        return ""
    kinds = sorted({r[0] for r in rows})
    r, alpha, scaling = rows[0][1:]
    return (f"{len(rows)} modules adapted ({', '.join(kinds)}), r={r}, lora_alpha={alpha}, "
            f"scaling alpha/sqrt(r)={scaling:.4g}")


@hookimpl
def lfx_register_strategies(register):
    register(RsloraStrategy())
