"""stages.cls.predict without torch: reading inputs, row ids."""

from __future__ import annotations




def test_predict_ids_match_the_training_run_form(tmp_path):
    from llama_factory_ext.stages.cls.predict import read_inputs

    (tmp_path / "new.jsonl").write_text('{"text": "a"}\n{"text": "b", "id": "pkg-b"}\n')
    ids, texts, _ = read_inputs(str(tmp_path / "new.jsonl"), "text")
    assert ids == ["new.jsonl:1", "pkg-b"] and texts == ["a", "b"]
    (tmp_path / "lines.txt").write_text("first\n\nthird\n")
    ids, _, _ = read_inputs(str(tmp_path / "lines.txt"), "text")
    assert ids == ["lines.txt:1", "lines.txt:3"]
