"""What LLaMA-Factory calls back: the pack's wrappers of the host's train stack (``train``), chat / api / eval argument
functions (``infer``) and LLaMA Board (``webui``). Only the import hook (``_activate``) imports this package."""

from __future__ import annotations

from ..runtime import PREFIX, say


def activate_module(module) -> None:
    """Import-hook entry: the train stack, or an inference / evaluation module. Never breaks the host's import."""
    try:
        if module.__name__ == "llamafactory.train.tuner":
            from .train import activate

            activate(module)
        elif module.__name__ in ("llamafactory.chat.chat_model", "llamafactory.eval.evaluator"):
            from .infer import patch_infer

            patch_infer(module)
        elif module.__name__ == "llamafactory.api.app":
            from .infer import patch_api

            patch_api(module)
        elif module.__name__ == "llamafactory.webui.interface":
            from .webui import activate_webui

            activate_webui(module)
    except Exception as exc:
        say(f"{PREFIX} could not attach to {module.__name__} ({type(exc).__name__}: {exc}); "
            "the host runs without the pack")
