"""Imported by ``llama_factory_ext.pth`` at interpreter start.

Installs a meta-path finder that patches the host right after ``llamafactory.train.tuner`` (training,
export), the chat / eval entry modules or the web UI (``llamafactory.webui.interface``) are imported.
Costs a few microseconds otherwise.
"""

import sys

from llama_factory_ext.api import pack_disabled

TARGETS = ("llamafactory.train.tuner", "llamafactory.chat.chat_model", "llamafactory.eval.evaluator",
           "llamafactory.webui.interface", "llamafactory.api.app")


class _PatchingLoader:
    def __init__(self, loader, disabled=False):
        self._loader = loader
        self._disabled = disabled

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        if self._disabled:  # patch nothing; only explain a recipe that needs the pack
            if module.__name__ == TARGETS[0]:
                from llama_factory_ext.patches.disabled import wrap_read_args

                wrap_read_args(module)
            return
        from llama_factory_ext.patches import activate_module

        activate_module(module)


class HostFinder:
    """Finds the target modules through the other finders and wraps their loaders."""

    disabled = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, self.disabled)
                return spec
        return None


def install() -> bool:
    disabled = pack_disabled()
    if any(isinstance(f, HostFinder) or type(f).__name__ == "HostFinder" for f in sys.meta_path):
        return not disabled
    finder = HostFinder()
    finder.disabled = disabled
    sys.meta_path.insert(0, finder)
    return not disabled


install()
