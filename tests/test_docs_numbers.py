"""Numbers the docs quote come from the files benchmarks and the header script generate, not from memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_baseline_numbers_in_recipes_doc_match_the_benchmark_json():
    bench = json.loads((DOCS / "bench_baseline.json").read_text())
    svc = next(r for r in bench["results"] if r["classifier"] == "LinearSVC")
    text = " ".join((DOCS / "recipes.md").read_text().split())
    assert f"LinearSVC **{100 * svc['accuracy']:.2f} % accuracy, {100 * svc['macro_f1']:.2f} macro-F1**" in text
    rows = f"train {bench['meta']['train_rows']:,} / test {bench['meta']['test_rows']:,} rows, {bench['meta']['labels']} labels"
    assert rows in text


def test_length_bucket_numbers_in_classification_doc_match_the_benchmark_json():
    quiet = json.loads((DOCS / "bench_cls.json").read_text())["quiet_run"]
    text = " ".join((DOCS / "classification.md").read_text().split())
    arms = quiet["arms"]
    assert f"trained {quiet['ratio_b8_samples_per_s']:.2f}x faster" in text
    assert f"scored {100 * arms['cls_lora_b8']['accuracy']:.1f} % against {100 * arms['cls_lora']['accuracy']:.1f} %" in text


def test_recipe_headers_are_quoted_only_in_generated_blocks():
    """A `# Predicted peak memory:` line in the docs sits inside a block that update_recipe_headers fills."""
    for doc in DOCS.glob("*.md"):
        text = doc.read_text()
        blocks = "".join(re.findall(r"<!-- recipe-header: \w+ -->.*?<!-- /recipe-header -->", text, re.S))
        assert text.count("# Predicted peak memory:") == blocks.count("# Predicted peak memory:"), doc.name


def test_serving_doc_tables_are_the_benchmark_output():
    """docs/serving.md quotes scripts/bench_serving.py's tables as written (docs/serving_bench.md, .json)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_serving", DOCS.parent / "scripts" / "bench_serving.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tables = bench.tables(json.loads((DOCS / "serving_bench.json").read_text()))
    assert f"{bench.BLOCK[0]}{tables}{bench.BLOCK[1]}" in (DOCS / "serving.md").read_text()
    assert (DOCS / "serving_bench.md").read_text().endswith(tables)


def test_problem_type_benchmark_doc_is_the_benchmark_output_and_classification_doc_quotes_it():
    """docs/bench_cls_types.md starts with benchmarks/bench_cls_types.py's tables of its JSON; docs/classification.md
    quotes the same means and spreads."""
    import importlib.util
    import sys

    sys.path.insert(0, str(DOCS.parent / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_cls_types", DOCS.parent / "benchmarks" / "bench_cls_types.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(DOCS.parent / "benchmarks"))
    result = json.loads((DOCS / "bench_cls_types.json").read_text())
    assert (DOCS / "bench_cls_types.md").read_text().startswith(bench.markdown(result))
    text = " ".join((DOCS / "classification.md").read_text().split())
    for name, metric in (("tags", "micro_f1"), ("tags", "macro_f1"), ("size", "mae"), ("size", "pearson")):
        stage = bench.spread(result[name]["stage_runs"], "tuned")[metric]
        tfidf = result[name]["tfidf"]["tuned"][metric]
        assert f"{bench.fmt(name, metric, stage)} (TF-IDF {bench.fmt(name, metric, tfidf)})" in text, (name, metric)


def test_split_numbers_in_classification_doc_match_the_benchmark_json():
    bench = json.loads((DOCS / "bench_cls_split.json").read_text())
    text = " ".join((DOCS / "classification.md").read_text().split())

    def span(name, how, key, fmt):
        values = [m[key] for s in bench[name]["splits"] for m in s[how]]
        return f"{fmt.format(min(values))}-{fmt.format(max(values))}"

    tags = bench["debian_tags train"]
    assert f"on average {span('debian_tags train', 'stratified', 'mean_gap', '{:.1f}')} rows off its share " \
           f"(random: {span('debian_tags train', 'random', 'mean_gap', '{:.1f}')})" in text
    ms = [m for s in tags["splits"] for m in s["stratified"]]
    assert f"within {100 * max(m['largest_relative_gap'] for m in ms):.1f} % of their share" in text
    assert min(m["fewest_rows_over_one_row_off"] or 10**9 for m in ms) >= 2000  # "2,000+ rows"
    sample = [m for s in bench["debian_tags sample"]["splits"] for m in s["stratified"]]
    assert max(m["max_gap"] for m in sample) <= 0.5  # "within half a row"
    size = [m for s in bench["debian_size train"]["splits"] for m in s["stratified"]]
    rand = [m for s in bench["debian_size train"]["splits"] for m in s["random"]]
    assert max(m["mean_gap"] for m in size) <= 0.0001 and max(m["max_decile_gap"] for m in size) <= 0.002
    assert f"(random: up to {max(m['mean_gap'] for m in rand):.3f})" in text
    assert f"(random: up to {max(m['max_decile_gap'] for m in rand):.3f})" in text


def test_estimator_validation_numbers_in_readme_and_estimator_doc_match_the_published_json():
    """README and docs/estimator.md quote benchmarks/published_memory.py's summary as it last ran."""
    groups = json.loads((DOCS / "estimator_published.json").read_text())["summary"]["groups"]
    readme = " ".join((DOCS.parent / "README.md").read_text().split())
    every, z3 = groups["all"], groups["ZeRO-3"]
    assert (f"Checked against {every['rows']} GPU runs other people published (median error "
            f"{every['median_abs_error_pct']:.1f}%, ZeRO-3 {z3['median_abs_error_pct']:.1f}%; the upper bound covers "
            f"{every['upper_covers']};") in readme
    doc = (DOCS / "estimator.md").read_text()
    names = {"FSDP": "FSDP / FSDP2", "DDP / single GPU": "DDP / one GPU", "all": "all like-with-like rows"}
    for name, g in groups.items():
        if name.startswith(("HF Trainer", "LitGPT", "every row")):
            continue
        row = (f"| {names.get(name, name)} | {g['rows']} | {g['median_abs_error_pct']:.1f}% | "
               f"{g['median_error_pct']:+.1f}% | {g['upper_covers']} of {g['rows']}")
        assert row in doc, row
