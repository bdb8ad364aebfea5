"""LLaMA Board (``llamafactory-cli webui``): the pack's stage, strategies, keys, memory estimate and run results.

Activated by the import hook right after ``llamafactory.webui.interface`` loads (before any tab is built). Gradio and
host objects live here; what they show comes from ``llama_factory_ext.board`` (no gradio there). Fail open: if the gate
or the web UI's internals do not match, the UI stays the host's own (one warning)."""

from __future__ import annotations

import importlib
import sys

from .. import board as webui
from ..api import UserError
from ..host.gate import WEBUI_ESTIMATE_TRIGGERS, check_host, check_webui, state, webui_state
from ..host.keys import host_arg_names
from .wrap import wrap

_webui = webui_state


def _warn_webui(problems: list[str]) -> None:
    _webui["problems"] = problems
    if not _webui["warned"]:
        _webui["warned"] = True
        print("llama-factory-ext: the web UI starts without the pack's stage, methods and memory estimate:\n"
              + "\n".join(f"  - {p}" for p in problems), file=sys.stderr, flush=True)



def activate_webui(interface=None) -> bool:
    """Add the pack to LLaMA Board. Called by the import hook after ``llamafactory.webui.interface`` loads."""
    if _webui["active"]:
        return True
    try:
        interface = interface or importlib.import_module("llamafactory.webui.interface")
        importlib.import_module("llamafactory.train.tuner")  # the pack's host patches (the estimator builds with them)
        problems = list(state["problems"]) if not state["active"] else []
        problems = problems or check_host() or check_webui()
        if problems:
            _warn_webui(problems)
            return False
        _patch_webui(interface)
    except Exception as exc:  # never break the host's UI
        _warn_webui([f"{type(exc).__name__}: {exc}"])
        return False
    _webui["active"] = True
    return True


def webui_is_active() -> bool:
    return webui_state["active"]


def _patch_webui(interface) -> None:
    constants = importlib.import_module("llamafactory.extras.constants")
    runner_mod = importlib.import_module("llamafactory.webui.runner")
    chatter = importlib.import_module("llamafactory.webui.chatter")
    stages = webui.stage_choices()
    methods = webui.method_choices()
    peft = set(constants.PEFT_METHODS)
    # in place: the host's modules hold these very objects (``from ..extras.constants import METHODS``)
    for label, name in stages.items():
        constants.TRAINING_STAGES.setdefault(label, name)
    constants.METHODS.extend(m for m in methods if m not in constants.METHODS)
    constants.PEFT_METHODS.update(m for m in methods if webui.base_method(m) in peft)

    wrap(interface, "create_train_tab", _make_create_train_tab)
    wrap(interface, "create_footer", _make_create_footer)
    wrap(runner_mod.Runner, "_parse_train_args", _make_parse_train_args)
    wrap(runner_mod.Runner, "_parse_eval_args", _make_parse_eval_args)
    wrap(runner_mod.Runner, "preview_train", _make_preview_train)
    wrap(runner_mod.Runner, "monitor", _make_monitor)
    wrap(runner_mod.Runner, "_build_config_dict", _make_build_config_dict)
    wrap(chatter.WebChatModel, "load_model", _make_chat_load_model)


def _ui_get(manager, data):
    def get(elem_id, default=None):
        try:
            return data.get(manager.get_elem_by_id(elem_id), default)
        except KeyError:
            return default

    return get


def _save_dir(*parts) -> str:
    from llamafactory.webui.common import get_save_dir

    return get_save_dir(*parts)


def _run_dirs(manager, data, method) -> list[str]:
    get = _ui_get(manager, data)
    model_name, ckpt = get("top.model_name"), get("top.checkpoint_path")
    if not model_name or not ckpt:
        return []
    return [_save_dir(model_name, method, c) for c in (ckpt if isinstance(ckpt, list) else [ckpt])]


def _host_data(manager, data, method) -> dict:
    """The UI values with a pack method replaced by its host base (so the host fills that base's fields) and
    checkpoints as full paths under the pack method's folder."""
    out = dict(data)
    out[manager.get_elem_by_id("top.finetuning_type")] = webui.base_method(method)
    ckpt_elem = manager.get_elem_by_id("top.checkpoint_path")
    ckpt = out.get(ckpt_elem)
    if ckpt:
        dirs = _run_dirs(manager, data, method)
        out[ckpt_elem] = dirs if isinstance(ckpt, list) else dirs[0]
    return out


def _gr_error(err: UserError):
    import gradio as gr

    return gr.Error(err.render())


def _pack_raw(data) -> dict:
    return {name: data[elem] for name, elem in _webui["elems"].items() if elem in data}


def _make_parse_train_args(original):
    def _parse_train_args(self, data):
        constants = importlib.import_module("llamafactory.extras.constants")
        get = _ui_get(self.manager, data)
        method = get("top.finetuning_type")
        stage = constants.TRAINING_STAGES.get(get("train.training_stage"))
        try:
            extra = webui.pack_values(_webui["fields"], _pack_raw(data), stage, webui.method_names(method))
        except UserError as err:
            raise _gr_error(err) from None
        if not webui.uses_pack(stage, method, extra):
            return original(self, data)
        args = original(self, _host_data(self.manager, data, method))
        args["output_dir"] = _save_dir(get("top.model_name"), method, get("train.output_dir"))
        return webui.finish_train_args(args, extra, method)

    return _parse_train_args


def _make_parse_eval_args(original):
    def _parse_eval_args(self, data):
        get = _ui_get(self.manager, data)
        method = get("top.finetuning_type")
        run_dirs = _run_dirs(self.manager, data, method)
        stage = webui.run_stage(method, run_dirs)
        if stage is None and not webui.is_pack_method(method):
            return original(self, data)
        args = original(self, _host_data(self.manager, data, method))
        args["output_dir"] = _save_dir(get("top.model_name"), method, get("eval.output_dir"))
        if stage is not None:
            return webui.finish_eval_args(args, method, stage, run_dirs)
        args["finetuning_type"] = webui.recipe_method(method)
        return args

    return _parse_eval_args


def _is_pack_run(args: dict) -> bool:
    return webui.uses_pack(args.get("stage"), args.get("finetuning_type"), set(args) - host_arg_names())


def _make_preview_train(original):
    def preview_train(self, data):
        import yaml

        from llamafactory.webui.common import _clean_cmd

        output_box = self.manager.get_elem_by_id("train.output_box")
        for out in original(self, data):
            text = out.get(output_box) if isinstance(out, dict) else None
            if isinstance(text, str) and text.startswith("```"):  # a command, not an error
                args = self._parse_train_args(data)
                if _is_pack_run(args):
                    body = yaml.safe_dump(_clean_cmd(args), sort_keys=False, allow_unicode=True)
                    gpus = _ui_get(self.manager, data)("train.device_count") or 1
                    target = data.get(_webui["elems"].get("lfx_target_gpu"), webui.GPU_AUTO)
                    out[output_box] = (text + "\n\n`training_args.yaml` the run will use (llama-factory-ext):\n\n"
                                       f"```yaml\n{body}```\n\n"
                                       + webui.estimate_markdown(_clean_cmd(args), int(gpus), target))
            yield out

    return preview_train


def _make_monitor(original):
    def monitor(self):
        output_path = output_box = None
        try:
            get = _ui_get(self.manager, self.running_data)
            tab = "train" if self.do_train else "eval"
            output_path = _save_dir(get("top.model_name"), get("top.finetuning_type"), get(f"{tab}.output_dir"))
            output_box = self.manager.get_elem_by_id(f"{tab}.output_box")
        except Exception:
            pass
        for out in original(self):
            if not self.running and output_path and isinstance(out, dict) and output_box in out:
                results = webui.results_markdown(output_path)
                if results:
                    out[output_box] = results + "\n\n" + str(out[output_box])
            yield out

    return monitor


def _make_build_config_dict(original):
    def _build_config_dict(self, data):
        """Saved UI settings keep only the pack fields that are set (a host-only run saves what the host saves)."""
        unset = {elem for elem in _webui["elems"].values() if elem in data and data[elem] in (None, "", elem.value)}
        return original(self, {k: v for k, v in data.items() if k not in unset})

    return _build_config_dict


def _make_chat_load_model(original):
    def load_model(self, data):
        method = _ui_get(self.manager, data)("top.finetuning_type")
        run_dirs = _run_dirs(self.manager, data, method)
        stage = webui.run_stage(method, run_dirs)
        if stage is not None:
            yield stage.generation_refusal(run_dirs[0] if run_dirs else None)
            return
        if webui.is_pack_method(method):
            data = _host_data(self.manager, data, method)
        yield from original(self, data)

    return load_model


def _make_create_train_tab(original):
    def create_train_tab(engine):
        import gradio as gr

        try:
            fields = webui.pack_fields()
            elems = {}
            for f in fields:
                kw = dict(label=f.label, info=f.help or None, render=False, elem_id=f"lfx-{f.key}")
                if f.widget == "check":
                    elems[f.elem_name] = gr.Checkbox(value=bool(f.default), **kw)
                elif f.widget == "choice":
                    elems[f.elem_name] = gr.Dropdown(choices=f.choices, value=None if f.default is None else str(f.default), **kw)
                else:
                    placeholder = "" if f.default in (None, {}, []) else f"default: {f.default}"
                    elems[f.elem_name] = gr.Textbox(value="", placeholder=placeholder or "not set", **kw)
            elems["lfx_target_gpu"] = gr.Dropdown(choices=webui.target_gpu_choices(), value=webui.GPU_AUTO,
                                                  label="target GPU (memory verdict)", render=False,
                                                  elem_id="lfx-target-gpu")
        except Exception as exc:
            _warn_webui([f"pack section not built ({type(exc).__name__}: {exc})"])
            return original(engine)
        manager = engine.manager
        host_base = manager.get_base_elems
        manager.get_base_elems = lambda: host_base() | set(elems.values())  # the train tab's inputs include them
        try:
            elem_dict = original(engine)
        finally:
            del manager.get_base_elems
        with gr.Accordion("llama-factory-ext: stage, strategy and memory settings", open=False,
                          elem_id="lfx-pack-tab"):
            gr.Markdown("Keys of the installed plugins; empty = not set. They apply when the stage / method "
                        "in brackets is selected. Values are YAML (`balanced`, `[1.0, 2.0]`, `{'lm_head': 1e-5}`).")
            items = list(elems.values())
            for i in range(0, len(items), 4):
                with gr.Row():
                    for elem in items[i:i + 4]:
                        elem.render()
        manager.add_elems("lfx", elems)
        _webui.update(engine=engine, fields=fields, elems=elems)
        try:
            _wire_visibility(elem_dict["training_stage"], manager.get_elem_by_id("top.finetuning_type"), fields, elems)
        except Exception as exc:  # all fields stay visible
            _warn_webui([f"pack fields always shown ({type(exc).__name__}: {exc})"])
        return elem_dict

    return create_train_tab


def _wire_visibility(stage_elem, method_elem, fields, elems) -> None:
    """Show a pack key only while its stage / strategy is selected."""
    import gradio as gr

    constants = importlib.import_module("llamafactory.extras.constants")
    outputs = [elems[f.elem_name] for f in fields]

    def show(stage_label, method):
        stage, names = constants.TRAINING_STAGES.get(stage_label), webui.method_names(method)
        return [gr.update(visible=webui.applies(f, stage, names)) for f in fields]

    for elem, visible in zip(outputs, show(stage_elem.value, method_elem.value), strict=True):
        elem.visible = visible["visible"]
    for trigger in (stage_elem.change, method_elem.change):
        trigger(show, [stage_elem, method_elem], outputs, queue=False)


def _make_create_footer(original):
    def create_footer():
        import gradio as gr

        engine = _webui["engine"]
        if engine is None:
            return original()
        with gr.Row():
            with gr.Column(scale=1):
                elems = original()
            with gr.Column(scale=2):
                panel = gr.Markdown("**Predicted peak GPU memory** (llama-factory-ext): choose a model and a dataset",
                                    elem_id="lfx-memory-estimate")
        try:
            _wire_estimate(engine, panel)
        except Exception as exc:
            _warn_webui([f"memory estimate not wired ({type(exc).__name__}: {exc})"])
        return elems

    return create_footer


def _wire_estimate(engine, panel) -> None:
    import gradio as gr

    manager = engine.manager
    skip = (gr.Button, gr.Markdown, gr.Plot, gr.HTML)
    inputs = {elem for elem_id, elem in ((manager.get_id_by_elem(e), e) for e in manager.get_elem_list())
              if elem_id.split(".")[0] in ("top", "train", "lfx") and isinstance(elem, gr.components.Component)
              and not isinstance(elem, skip) and not (isinstance(elem, gr.Slider) and elem.interactive is False)}
    triggers = []
    for elem_id in WEBUI_ESTIMATE_TRIGGERS:
        try:
            triggers.append(manager.get_elem_by_id(elem_id).change)
        except KeyError:
            pass
    triggers += [elem.change for elem in _webui["elems"].values()]

    from llamafactory.webui.common import _clean_cmd

    def estimate(data):
        full = {elem: data.get(elem, getattr(elem, "value", None)) for elem in manager.get_elem_list()}
        get = _ui_get(manager, full)
        if not get("top.model_path"):
            return "**Predicted peak GPU memory** (llama-factory-ext): choose a model"
        full[manager.get_elem_by_id("train.dataset")] = get("train.dataset") or []
        try:
            args = engine.runner._parse_train_args(full)
        except Exception as exc:
            return f"**Predicted peak GPU memory** (llama-factory-ext): cannot read the settings ({exc})"
        gpus = get("train.device_count") or 1
        return webui.estimate_markdown(_clean_cmd(args), int(gpus), get("lfx.lfx_target_gpu") or webui.GPU_AUTO)

    gr.on(triggers, estimate, inputs=inputs, outputs=[panel], trigger_mode="always_last", show_progress="hidden",
          concurrency_limit=1, concurrency_id="lfx_estimate")
