"""The read side of LLaMA-Factory: the capability gate (``gate``), the host's argument names (``keys``), the host
functions the pack calls (``calls``, which loads the host) and version rules (``compat``). Nothing here imports the
pack above it; what the host calls back lives in ``llama_factory_ext.patches``."""

