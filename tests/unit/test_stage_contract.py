"""A stage from a third-party plugin gets the host's commands and LLaMA Board right through its own methods only:
generic code names no stage (test-only stage, registered like an entry-point plugin)."""

from __future__ import annotations

import os

import pytest
from pydantic import BaseModel

from llama_factory_ext import board, plugins
from llama_factory_ext.api import Stage, UserError
from llama_factory_ext.hookspecs import hookimpl
from llama_factory_ext.patches.infer import infer_recipe, stage_run

MARKER = "tally_run.json"


class TallyArgs(BaseModel):
    tally_top: int = 5


class TallyStage(Stage):
    name = "tally"
    label = "Token Tally"
    help = "counts tokens"
    args_model = TallyArgs

    def finished_run(self, path):
        return os.path.isfile(os.path.join(path, MARKER))

    def generation_refusal(self, run_dir):
        return f"tally runs count tokens; read {run_dir}/{MARKER}"

    def ui_results(self, output_dir):
        return "### tallied" if self.finished_run(output_dir) else None

    def ui_host_keys(self):
        return {"eval_dataset": "tallied too"}

    def ui_eval_args(self, args, run_dirs):
        return {**args, "stage": self.name, "tally_top": 3}


class TallyPlugin:
    @hookimpl
    def lfx_register_stages(self, register):
        register(TallyStage())


@pytest.fixture()
def tally(tmp_path):
    plugins.reset()
    plugins.get_plugin_manager().register(TallyPlugin(), name="tally-plugin")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / MARKER).write_text("{}")
    yield run_dir
    plugins.reset()


def test_board_offers_the_stage_its_keys_and_results(tally):
    assert board.stage_choices()["Token Tally"] == "tally"
    fields = {(f.key, f.owner) for f in board.pack_fields()}
    assert ("tally_top", "tally") in fields and ("eval_dataset", "tally") in fields
    assert board.results_markdown(str(tally)) == "### tallied"
    stage = board.run_stage("lora", [str(tally)])
    assert stage is not None and stage.name == "tally"
    ev = board.finish_eval_args({"finetuning_type": "lora"}, "lora", stage, [str(tally)])
    assert ev["stage"] == "tally" and ev["tally_top"] == 3


def test_chat_refuses_and_export_routes_a_run_of_the_stage(tally):
    stage, where = stage_run({"adapter_name_or_path": f"/nowhere,{tally}"})
    assert stage.name == "tally" and where == str(tally)
    with pytest.raises(UserError, match="tally runs count tokens"):
        infer_recipe({"adapter_name_or_path": str(tally), "template": "llama3"})
    with pytest.raises(UserError, match="tally runs count tokens"):
        infer_recipe(["--stage", "tally"])


def test_host_runs_are_left_alone(tally, tmp_path):
    assert stage_run({"adapter_name_or_path": str(tmp_path)}) == (None, None)
    assert infer_recipe({"adapter_name_or_path": str(tmp_path), "finetuning_type": "lora"}) is None
    assert board.run_stage("lora", [str(tmp_path)]) is None
    assert board.results_markdown(str(tmp_path)) == ""
