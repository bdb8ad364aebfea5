"""quiet: the host's load report and config lines, held and settled."""

from __future__ import annotations

import logging

import pytest


def test_held_load_report_reemits_only_unexplained_keys():
    from llama_factory_ext.quiet import LOAD_LOGGER, held_load_report, settle_load_report

    seen = []

    class Catch(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger(LOAD_LOGGER)
    h = Catch()
    logger.addHandler(h)
    try:
        with held_load_report() as held:
            logger.warning("LlamaForSequenceClassification LOAD REPORT from: x")
            logger.warning("something else")
        assert seen == ["something else"] and len(held) == 1
        head_only = {"missing_keys": ["score.weight"], "unexpected_keys": ["lm_head.weight"], "mismatched_keys": []}
        assert settle_load_report(held, head_only, ["score"]) is False and len(seen) == 1
        body_missing = dict(head_only, missing_keys=["score.weight", "model.layers.0.mlp.up_proj.weight"])
        assert settle_load_report(held, body_missing, ["score"]) is True
        assert seen[-1].startswith("LlamaForSequenceClassification LOAD REPORT")
        with pytest.raises(RuntimeError), held_load_report():
            logger.warning("LOAD REPORT then a conversion error")
            raise RuntimeError("see the report above")
        assert seen[-1] == "LOAD REPORT then a conversion error"  # a failed load keeps its report
        logger.warning("LOAD REPORT outside the block")
        assert seen[-1] == "LOAD REPORT outside the block"  # nothing filtered outside the pack's own call
    finally:
        logger.removeHandler(h)


def test_config_printed_once_drops_only_repeats():
    from llama_factory_ext.quiet import CONFIG_LOGGER, config_printed_once

    seen = []

    class Catch(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger(CONFIG_LOGGER)
    old = logger.level
    logger.setLevel(logging.INFO)
    h = Catch()
    logger.addHandler(h)
    try:
        with config_printed_once():
            for msg in ("Model config A", "loading file", "Model config A", "Model config B", "loading file"):
                logger.info(msg)
        logger.info("Model config A")
    finally:
        logger.removeHandler(h)
        logger.setLevel(old)
    assert seen == ["Model config A", "loading file", "Model config B", "loading file", "Model config A"]
