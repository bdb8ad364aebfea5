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


def test_predict_inputs_refuse_non_text_surrogates_and_repeated_ids(tmp_path):
    import pytest

    from llama_factory_ext.api import UserError
    from llama_factory_ext.stages.cls.predict import read_inputs

    (tmp_path / "new.jsonl").write_text('{"text": ["a"]}\n{"text": "b \\ud800"}\n{"text": "c", "id": "k"}\n'
                                        '{"text": "d", "id": "k"}\n')
    with pytest.raises(UserError) as err:
        read_inputs(str(tmp_path / "new.jsonl"), "text")
    msg = err.value.render()
    assert "column `text`: text is a list, not a string, in rows 1" in msg
    assert "lone surrogate character (not valid Unicode text) in rows 2" in msg
    assert "id 'k' is in row 3 and row 4" in msg
    (tmp_path / "ragged.csv").write_text("text,id\nhello,1\nthere,2,3\n")
    with pytest.raises(UserError, match="row 2 has 3 fields, the header has 2"):
        read_inputs(str(tmp_path / "ragged.csv"), "text")
