"""stages.cls.export: where an export may go."""

from __future__ import annotations




def test_export_refuses_base_model_run_folders_and_non_empty_folders(tmp_path):
    from llama_factory_ext.stages.cls.export import destination_problem

    run, base, other_run, full, empty = (tmp_path / n for n in ("run", "base", "run2", "full", "empty"))
    for d in (run, base, other_run, full, empty):
        d.mkdir()
    (run / "cls_run.json").write_text("{}")
    (base / "config.json").write_text("{}")
    (other_run / "trainer_state.json").write_text("{}")
    (full / "notes.txt").write_text("mine")
    assert "the run folder" in destination_problem(str(run), str(run), str(base))
    assert "the base model" in destination_problem(str(base), str(run), str(base), force=True)
    assert "training run folder" in destination_problem(str(other_run), str(run), str(base), force=True)
    assert "--force" in destination_problem(str(full), str(run), str(base))
    assert destination_problem(str(full), str(run), str(base), force=True) is None
    assert destination_problem(str(empty), str(run), str(base)) is None
    assert destination_problem(str(tmp_path / "new"), str(run), str(base)) is None
