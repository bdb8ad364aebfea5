"""Imported by ``llama_factory_ext.pth`` at interpreter start.

Installs a meta-path finder that patches the host right after ``llamafactory.train.tuner`` (training,
export) or the chat / eval entry modules are imported. Costs a few microseconds otherwise.
"""

import os
import sys

TARGETS = ("llamafactory.train.tuner", "llamafactory.chat.chat_model", "llamafactory.eval.evaluator")


class _PatchingLoader:
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        from llama_factory_ext.host import activate_module

        activate_module(module)


class HostFinder:
    """Finds the target modules through the other finders and wraps their loaders."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def install() -> bool:
    if os.environ.get("LLAMA_FACTORY_EXT_DISABLE", "").lower() in ("1", "true", "yes"):
        return False
    if any(isinstance(f, HostFinder) or type(f).__name__ == "HostFinder" for f in sys.meta_path):
        return True
    sys.meta_path.insert(0, HostFinder())
    return True


ACTIVE = install()
