"""llama-factory-ext: a plugin pack for LLaMA-Factory (kept import-light: it loads at every interpreter start)."""

__version__ = "0.1.0"


def __getattr__(name):  # lazy, so the .pth import stays cheap
    if name == "hookimpl":
        from .hookspecs import hookimpl

        return hookimpl
    raise AttributeError(name)
