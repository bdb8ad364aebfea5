"""stages.cls.export: where an export may go."""

from __future__ import annotations




def test_export_refuses_base_model_run_and_model_folders_and_non_empty_folders(tmp_path):
    from llama_factory_ext.stages.cls.export import destination_problem

    run, base, other_run, full, empty = (tmp_path / n for n in ("run", "base", "run2", "full", "empty"))
    for d in (run, base, other_run, full, empty):
        d.mkdir()
    (run / "cls_run.json").write_text("{}")
    (base / "config.json").write_text("{}")
    (other_run / "trainer_state.json").write_text("{}")
    (full / "notes.txt").write_text("mine")
    model, earlier = tmp_path / "model", tmp_path / "earlier_export"
    for d, files in ((model, ("config.json", "model.safetensors")), (earlier, ("config.json", "model.safetensors",
                                                                               "lfx_export.json"))):
        d.mkdir()
        for name in files:
            (d / name).write_text("{}")
    assert "the run folder" in destination_problem(str(run), str(run), str(base))
    assert "the base model" in destination_problem(str(base), str(run), str(base), force=True)
    assert "training run folder" in destination_problem(str(other_run), str(run), str(base), force=True)
    assert "--force" in destination_problem(str(full), str(run), str(base))
    for force in (False, True):  # a model the pack did not export: never replaced
        problem = destination_problem(str(model), str(run), str(base), force=force)
        assert problem.startswith(f"--out {model} holds a model (model.safetensors)") and "never replaces" in problem
    assert "--force" in destination_problem(str(earlier), str(run), str(base))  # an earlier export: only with --force
    assert destination_problem(str(earlier), str(run), str(base), force=True) is None
    assert destination_problem(str(full), str(run), str(base), force=True) is None
    assert destination_problem(str(empty), str(run), str(base)) is None
    assert destination_problem(str(tmp_path / "new"), str(run), str(base)) is None
