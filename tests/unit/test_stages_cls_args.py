"""stages.cls.args: the stage's keys."""

from __future__ import annotations

import pytest

from llama_factory_ext.stages.cls.args import ClsArgs


def test_args_reject_bad_template_and_single_label():
    with pytest.raises(Exception, match="placeholder"):
        ClsArgs(cls_template="no placeholder")
    with pytest.raises(Exception, match="at least two"):
        ClsArgs(label_names=["only"])
