"""Builds LLaMA Board in-process (as `llamafactory-cli webui` does) and prints what the tests check, as JSON.

usage: python webui_probe.py MODEL_DIR DATA_DIR [CLS_RUN_DIR] [--break-runner]
Run in a scratch cwd (the UI writes llamaboard_cache/ and saves/ there).
"""

import json
import sys


def main() -> None:
    argv = [a for a in sys.argv[1:] if not a.startswith("--")]
    model_dir, data_dir = argv[0], argv[1]
    cls_run = argv[2] if len(argv) > 2 else None
    if "--break-runner" in sys.argv:  # a host whose web UI internals changed: the pack must stay out
        from llamafactory.webui import runner

        def _parse_train_args(self, elems):  # a changed signature
            return {}

        runner.Runner._parse_train_args = _parse_train_args

    from llamafactory.extras.constants import METHODS, PEFT_METHODS, TRAINING_STAGES
    from llamafactory.webui.common import _clean_cmd
    from llamafactory.webui.interface import create_ui

    ui = create_ui()
    report = {"stages": dict(TRAINING_STAGES), "methods": list(METHODS), "peft": sorted(PEFT_METHODS)}
    try:
        from llama_factory_ext.host.gate import webui_state

        report["webui_active"] = webui_state["active"]
        report["webui_problems"] = webui_state["problems"]
    except Exception:
        report["webui_active"] = None
    engine = next(fn.fn.__self__ for fn in ui.fns.values()
                  if getattr(fn.fn, "__name__", "") == "resume" and hasattr(fn.fn, "__self__"))
    m = engine.manager
    ids = {m.get_id_by_elem(e): e for e in m.get_elem_list()}
    report["elem_ids"] = sorted(ids)
    report["visible_at_start"] = sorted(i for i, e in ids.items() if i.startswith("lfx.") and e.visible)

    def data_for(**values):
        data = {e: getattr(e, "value", None) for e in m.get_elem_list()}
        base = {"top.model_name": "Custom", "top.model_path": model_dir, "train.dataset_dir": data_dir,
                "train.output_dir": "run1", "top.lang": "en"}
        for k, v in {**base, **values}.items():
            data[ids[k]] = v
        return data

    host_only = data_for(**{"train.training_stage": "Supervised Fine-Tuning", "top.finetuning_type": "lora",
                            "train.dataset": ["alpaca_sample"]})
    if "--break-runner" not in sys.argv:
        report["host_only_args"] = _clean_cmd(engine.runner._parse_train_args(host_only))
        report["host_only_saved"] = engine.runner._build_config_dict(host_only)
    if not report.get("webui_active"):
        print(json.dumps(report, default=str))
        return

    cls = data_for(**{"train.training_stage": "Sequence Classification", "top.finetuning_type": "rslora + cls_head",
                      "train.dataset": ["debian_sample_train"], "train.lora_rank": 4,
                      "lfx.lfx_eval_dataset": "debian_sample_validation", "lfx.lfx_class_weights": "balanced",
                      "lfx.lfx_memory_check": "off"})
    report["cls_args"] = _clean_cmd(engine.runner._parse_train_args(cls))
    report["cls_preview"] = [str(v) for out in engine.runner.preview_train(cls) for v in out.values()]
    layerwise = data_for(**{"train.training_stage": "Sequence Classification",
                            "top.finetuning_type": "rslora + cls_head + layerwise_lr",
                            "train.dataset": ["debian_sample_train"], "lfx.lfx_layerwise_lr_decay": "0.8",
                            "lfx.lfx_layerwise_lr_overrides": "{'score': 1.0e-3}"})
    report["layerwise_args"] = _clean_cmd(engine.runner._parse_train_args(layerwise))
    bad = data_for(**{"train.training_stage": "Sequence Classification", "top.finetuning_type": "rslora + cls_head",
                      "train.dataset": ["debian_sample_train"], "lfx.lfx_class_weights": "[1, 2"})
    try:
        engine.runner._parse_train_args(bad)
        report["bad_value_error"] = None
    except Exception as exc:
        report["bad_value_error"] = f"{type(exc).__name__}: {exc}"

    from llama_factory_ext import board as webui

    report["estimate_b2"] = webui.estimate_markdown(report["cls_args"], 1, "H100")
    report["estimate_b16"] = webui.estimate_markdown({**report["cls_args"], "per_device_train_batch_size": 16}, 1, "H100")
    for name, values in {"q4": {"top.quantization_bit": "4"}, "z3": {"train.ds_stage": "3", "train.device_count": "2"},
                         "lora": {"top.finetuning_type": "lora"}, "full": {"top.finetuning_type": "full"}}.items():
        d = data_for(**{"train.training_stage": "Sequence Classification", "top.finetuning_type": "rslora + cls_head",
                        "train.dataset": ["debian_sample_train"], "train.lora_rank": 4, **values})
        args = _clean_cmd(engine.runner._parse_train_args(d))
        report[f"estimate_{name}"] = webui.estimate_markdown(args, int(values.get("train.device_count", 1)), "H100")
    if cls_run:
        ev = data_for(**{"top.finetuning_type": "rslora + cls_head", "top.checkpoint_path": [cls_run],
                         "eval.dataset_dir": data_dir, "eval.dataset": ["debian_sample_validation"],
                         "eval.output_dir": "eval1"})
        report["eval_args"] = _clean_cmd(engine.runner._parse_eval_args(ev))
        report["chat"] = list(engine.chatter.load_model(ev))
        report["results"] = webui.results_markdown(cls_run)
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
