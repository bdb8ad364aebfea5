"""All hook specifications of llama-factory-ext. Every hook name starts with ``lfx_``.

Plugins implement them with ``@llama_factory_ext.hookimpl`` (also ``llama_factory_ext.hookspecs.hookimpl``) and are found through the
entry-point group ``llama_factory_ext``. Built-in features use the same hooks.
"""

import pluggy

hookspec = pluggy.HookspecMarker("llama_factory_ext")
hookimpl = pluggy.HookimplMarker("llama_factory_ext")


@hookspec
def lfx_register_strategies(register):
    """Register fine-tuning strategies selectable by ``finetuning_type``.

    :param register: call ``register(strategy)`` with a :class:`llama_factory_ext.api.Strategy`.
        A strategy owns YAML keys (its ``args_model``), validates and rewrites host arguments
        before the host parses them, changes the model after it loads and can supply optimizer
        parameter groups.
    """


@hookspec
def lfx_register_stages(register):
    """Register training stages selectable by ``stage``.

    :param register: call ``register(stage)`` with a :class:`llama_factory_ext.api.Stage`.
    """


@hookspec
def lfx_register_keys(register):
    """Register top-level YAML keys that belong to no strategy or stage (e.g. ``memory_check``).

    :param register: call ``register(owner, args_model)`` with a pydantic model class; its
        fields become accepted YAML keys, parsed values land in ``run.settings[owner]``.
    """


@hookspec
def lfx_before_training(run):
    """Called once per process after the host parsed its arguments, before any weights load.

    :param run: the :class:`llama_factory_ext.api.Run` of this training run (``run.parsed``
        holds the host's parsed dataclasses). Raise ``llama_factory_ext.api.UserError`` to stop.
    """


@hookspec
def lfx_memory_terms(spec):
    """Contribute extra terms to the peak-memory estimate.

    :param spec: the :class:`llama_factory_ext.estimator.EstimateSpec` being estimated.
    :return: a list of :class:`llama_factory_ext.api.MemoryTerm` (or ``None``).
    """


@hookspec
def lfx_recipe_dirs():
    """Contribute folders of recipe YAMLs for ``llamafactory-ext recipes``.

    :return: a list of paths (or ``None``).
    """
