"""Imported by ``llama_factory_ext.pth`` at interpreter start.

Installs a meta-path finder that patches the host right after ``llamafactory.train.tuner`` is imported,
and the web UI right after ``llamafactory.webui.interface`` is. Costs a few microseconds otherwise.
"""

import os
import sys

TARGETS = {"llamafactory.train.tuner": "activate", "llamafactory.webui.interface": "activate_webui"}


class _PatchingLoader:
    def __init__(self, loader, hook):
        self._loader = loader
        self._hook = hook

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        from llama_factory_ext import host

        getattr(host, self._hook)(module)


class HostFinder:
    """Finds the ``TARGETS`` modules through the other finders and wraps their loaders."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, TARGETS[fullname])
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
