"""The cls data checks through the real `llamafactory-ext validate`: a ragged CSV row, a label written two ways."""

from __future__ import annotations

import json

from conftest import run_cli, write_yaml


def _recipe(workdir, dataset: str):
    import yaml

    raw = yaml.safe_load((workdir / "tiny_cls.yaml").read_text())
    raw.update(dataset=dataset, val_size=0.25, do_predict=False)
    raw.pop("eval_dataset")
    raw.pop("test_dataset")
    return write_yaml(workdir / "r.yaml", raw)


def _register(workdir, name: str, file_name: str):
    info_path = workdir / "data" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info[name] = {"file_name": file_name, "columns": {"text": "text", "label": "label"}}
    info_path.write_text(json.dumps(info))


def test_validate_names_a_ragged_csv_row(workdir):
    rows = ["text,label"] + [f"text {i},{'ab'[i % 2]}" for i in range(10)]
    rows[4] = "a row, with an unquoted comma,b"
    (workdir / "data" / "ragged.csv").write_text("\n".join(rows) + "\n")
    _register(workdir, "ragged", "ragged.csv")
    r = run_cli(["llamafactory-ext", "validate", _recipe(workdir, "ragged")], workdir)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "ragged.csv: row 4 has 3 fields, the header has 2" in r.stdout, r.stdout


def test_validate_warns_when_labels_written_two_ways_merge(workdir):
    rows = [{"text": f"text {i}", "label": ["doc", "doc ", "net"][i % 3]} for i in range(12)]
    (workdir / "data" / "spaced.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _register(workdir, "spaced", "spaced.jsonl")
    r = run_cli(["llamafactory-ext", "validate", _recipe(workdir, "spaced")], workdir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning: labels written differently count as one class" in r.stderr
    assert "'doc' and 'doc '" in r.stderr
