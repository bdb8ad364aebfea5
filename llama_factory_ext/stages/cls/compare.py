"""A finished cls run's predictions against its TF-IDF baseline's: error analysis (``llamafactory-ext compare``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...api import UserError
from ...safeio import atomic_write, write_json
from .baseline import (
    BASELINE_DIR,
    MULTI,
    PREDICTIONS,
    REGRESSION,
    SINGLE,
    label_matrix,
    metrics_of,
)
from .compare_report import compare_markdown, plot_f1_delta, plot_mae_by_range

COMPARE_DIR = "compare"


def read_predictions(path: Path, who: str) -> dict[str, dict]:
    """id -> row of a predictions.jsonl: {id, gold, predicted, probabilities} where gold / predicted are a label
    (single-label) or a list of labels (multi-label), or {id, gold, predicted} numbers (regression). A repeated id
    or rows of different types are refused, naming the lines (rows sharing an id could not be told apart when the
    two files are joined)."""
    from ...safeio import DATA_LIMIT, read_text

    if not path.is_file():
        raise UserError(f"{who}: {path} does not exist")
    rows, problems, line_of, first_kind = {}, [], {}, None
    for i, line in enumerate(read_text(path, DATA_LIMIT, "predictions file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            problems.append(f"{path} line {i}: not JSON ({getattr(exc, 'msg', 'nested too deeply')})")
            continue
        if not isinstance(r, dict):
            problems.append(f"{path} line {i}: not a JSON object")
            continue
        kind = row_kind(r)
        need = ("id", "gold", "predicted") + (() if kind == REGRESSION else ("probabilities",))
        missing = [k for k in need if k not in r]
        if missing:
            problems.append(f"{path} line {i}: missing {', '.join(missing)}")
            continue
        wrong = _row_problem(r, kind)
        if wrong:
            problems.append(f"{path} line {i}: {wrong}")
            continue
        if first_kind is None:
            first_kind = (kind, i)
        elif kind != first_kind[0]:
            problems.append(f"{path} line {i}: a {kind} row (gold {r['gold']!r}) after {first_kind[0]} rows "
                            f"(line {first_kind[1]}); one file holds one problem type")
            continue
        rid = str(r["id"])
        if rid in line_of:
            problems.append(f"{path}: id {rid!r} is on line {line_of[rid]} and line {i}; rows are matched by id, so ids "
                            f"must be unique (give the data an `id` column with unique values and predict again)")
            continue
        line_of[rid] = i
        rows[rid] = r
    if problems:
        raise UserError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []))
    if not rows:
        raise UserError(f"{who}: {path} has no predictions")
    return rows


def row_kind(r: dict) -> str:
    """The problem type a predictions row is written for: gold a list -> multi_label, a number -> regression."""
    gold = r.get("gold")
    if isinstance(gold, list):
        return MULTI
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        return REGRESSION
    return SINGLE


def _row_problem(r: dict, kind: str = SINGLE):
    """What is wrong with the fields of one predictions row, or None."""
    import math

    if isinstance(r["id"], bool) or not isinstance(r["id"], (str, int)):
        return f"id is {type(r['id']).__name__}, not a string"
    for k in ("gold", "predicted"):
        v = r[k]
        if kind == REGRESSION:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"`{k}` is {v!r}, not a finite number (the row's gold is a number: a regression row)"
        elif kind == MULTI:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                return f"`{k}` is {type(v).__name__}, not a list of labels (the row's gold is a list: a multi-label row)"
        elif not isinstance(v, str):
            return f"`{k}` is {'missing (null)' if v is None else type(v).__name__}, not a label"
    if kind == REGRESSION:
        return None
    p = r["probabilities"]
    if not isinstance(p, dict) or not p or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values()):
        return "`probabilities` is not a mapping label: number"
    return None


def model_name(run_dir) -> str:
    """A readable name of a cls run's model: the hub id, or the local folder's name (skipping generic ones)."""
    import re

    manifest_path = Path(run_dir) / "cls_run.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "cls run"
    base = str(manifest.get("base_model") or "")
    if not base:
        return "cls run"
    if not os.path.isabs(base) and not os.path.exists(base):
        return base  # a hub id
    generic = re.compile(r"^(model|models|weights|snapshots|checkpoint.*|[0-9a-f]{40}|main)$", re.I)
    for part in reversed(Path(base).parts):
        if part and part != os.sep and not generic.match(part):
            return part
    return base


def _margin(row: dict, label: str) -> float:
    """p(label) - p(gold) in one model's probabilities."""
    p = row["probabilities"]
    return float(p.get(label, 0.0)) - float(p.get(row["gold"], 0.0))


def compare_predictions(llm: dict[str, dict], base: dict[str, dict], confident: float | None = None,
                        examples: int = 20, model: str = "cls run") -> dict:
    """Side-by-side metrics, per-class deltas, disagreements and suspected mislabels (JSON-ready).

    Suspected mislabels: every row where both models predict the same label against the gold one, ranked by
    evidence: the smaller of the two margins p(predicted) - p(gold) (both models must prefer their label).
    ``confident`` optionally also requires both probabilities to reach it.
    """
    only_llm = [i for i in llm if i not in base]
    if only_llm:
        raise UserError(f"{len(only_llm)} of the run's {len(llm)} predicted rows are not in the baseline "
                        f"(e.g. id {only_llm[0]!r}): rerun `llamafactory-ext baseline` with the run's recipe")
    ids = list(llm)
    kind, other = row_kind(llm[ids[0]]), row_kind(base[ids[0]])
    if kind != other:
        raise UserError(f"the run's predictions are {kind} but the baseline's are {other}: rerun "
                        f"`llamafactory-ext baseline` with the run's recipe")
    bad_gold = [i for i in llm if not _same_gold(llm[i]["gold"], base[i]["gold"])]
    if bad_gold:
        from .records import normalize_label

        i = bad_gold[0]
        g1, g2 = llm[i]["gold"], base[i]["gold"]
        hint = ("; they differ only by whitespace or Unicode form: make the baseline with the run's "
                "`cls_label_normalize` setting" if kind == SINGLE and normalize_label(g1) == normalize_label(g2) else "")
        raise UserError(f"gold labels differ between the run and the baseline for {len(bad_gold)} rows (e.g. id {i!r}: "
                        f"{llm[i]['gold']!r} vs {base[i]['gold']!r}){hint}")
    if kind == REGRESSION:
        return compare_regression(llm, base, ids, examples, model)
    labels = list(llm[ids[0]]["probabilities"])
    for who, rows in (("the run", llm), ("the baseline", base)):
        other = next((i for i in ids if set(rows[i]["probabilities"]) != set(labels)), None)
        if other is not None:
            raise UserError(f"{who}'s label set differs between rows (ids {ids[0]!r} and {other!r}): "
                            f"{sorted(labels)} vs {sorted(rows[other]['probabilities'])}; rerun `llamafactory-ext baseline` "
                            f"with the run's recipe")
    if kind == MULTI:
        return compare_multilabel(llm, base, ids, labels, examples, model)
    gold = [llm[i]["gold"] for i in ids]
    m_llm = metrics_of(gold, [llm[i]["predicted"] for i in ids], labels)
    m_base = metrics_of(gold, [base[i]["predicted"] for i in ids], labels)
    per_class = []
    for lab in labels:
        a, b = m_llm["per_class"].get(lab, {}), m_base["per_class"].get(lab, {})
        per_class.append({"label": lab, "support": int(a.get("support", 0)),
                          "f1_llm": a.get("f1-score", 0.0), "f1_baseline": b.get("f1-score", 0.0),
                          "f1_delta": a.get("f1-score", 0.0) - b.get("f1-score", 0.0)})

    def evidence(i) -> float:
        lab = llm[i]["predicted"]
        return min(_margin(llm[i], lab), _margin(base[i], lab))

    def row(i):
        r = {"id": i, "gold": llm[i]["gold"], "llm": llm[i]["predicted"], "baseline": base[i]["predicted"],
             "p_llm": llm[i]["probabilities"].get(llm[i]["predicted"]),
             "p_baseline": base[i]["probabilities"].get(base[i]["predicted"])}
        if llm[i]["predicted"] == base[i]["predicted"] != llm[i]["gold"]:
            r["margin"] = round(evidence(i), 6)
        if base[i].get("text"):
            r["text"] = base[i]["text"]
        return r

    llm_right = [i for i in ids if llm[i]["predicted"] == llm[i]["gold"] != base[i]["predicted"]]
    base_right = [i for i in ids if base[i]["predicted"] == base[i]["gold"] != llm[i]["predicted"]]
    agree_wrong = [i for i in ids if llm[i]["predicted"] == base[i]["predicted"] != llm[i]["gold"]]
    suspects = [i for i in agree_wrong if confident is None or (
        llm[i]["probabilities"].get(llm[i]["predicted"], 0) >= confident
        and base[i]["probabilities"].get(base[i]["predicted"], 0) >= confident)]
    suspects.sort(key=lambda i: -evidence(i))
    by_conf = lambda i, who: -(who[i]["probabilities"].get(who[i]["predicted"], 0))  # noqa: E731
    llm_right.sort(key=lambda i: by_conf(i, llm))
    base_right.sort(key=lambda i: by_conf(i, base))
    return {
        "n": len(ids),
        "model": model,
        "llm": {"accuracy": m_llm["accuracy"], "macro_f1": m_llm["macro_f1"]},
        "baseline": {"accuracy": m_base["accuracy"], "macro_f1": m_base["macro_f1"]},
        "per_class": per_class,
        "counts": {"only_llm_right": len(llm_right), "only_baseline_right": len(base_right),
                   "both_right": sum(llm[i]["predicted"] == base[i]["predicted"] == llm[i]["gold"] for i in ids),
                   "both_wrong_agreeing": len(agree_wrong),
                   "suspected_mislabels": len(suspects)},
        "confident": confident,
        "only_llm_right": [row(i) for i in llm_right[:examples]],
        "only_baseline_right": [row(i) for i in base_right[:examples]],
        "suspected_mislabels": [row(i) for i in suspects[:examples]],
    }


def _same_gold(a, b) -> bool:
    """Gold values of one row agree: equal labels, the same label set, or numbers equal up to rounding."""
    if isinstance(a, list) and isinstance(b, list):
        return sorted(a) == sorted(b)
    if row_kind({"gold": a}) == REGRESSION and row_kind({"gold": b}) == REGRESSION:
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return a == b


def compare_multilabel(llm: dict, base: dict, ids: list, labels: list, examples: int = 20, model: str = "cls run") -> dict:
    """Multi-label comparison: micro / macro / samples-F1 and exact match of both, per-label F1 deltas (where each
    model wins), and the rows only one model gets exactly right."""
    import numpy as np

    from .metrics import multilabel_metrics

    y = label_matrix([llm[i]["gold"] for i in ids], labels)
    pl = label_matrix([llm[i]["predicted"] for i in ids], labels)
    pb = label_matrix([base[i]["predicted"] for i in ids], labels)
    ml, mb = (multilabel_metrics(y, p, 0.5, labels) for p in (pl, pb))
    per_class = []
    for lab in labels:
        a, b = ml["per_label"][lab], mb["per_label"][lab]
        per_class.append({"label": lab, "support": a["support"], "f1_llm": a["f1"], "f1_baseline": b["f1"],
                          "f1_delta": a["f1"] - b["f1"], "precision_llm": a["precision"], "recall_llm": a["recall"],
                          "precision_baseline": b["precision"], "recall_baseline": b["recall"]})
    exact_l, exact_b = (pl == y).all(1), (pb == y).all(1)
    wrong_l, wrong_b = (pl != y).sum(1), (pb != y).sum(1)  # labels each model gets wrong per row

    def row(j):
        i = ids[j]
        r = {"id": i, "gold": sorted(llm[i]["gold"]), "llm": sorted(llm[i]["predicted"]),
             "baseline": sorted(base[i]["predicted"])}
        if base[i].get("text"):
            r["text"] = base[i]["text"]
        return r

    only_l = sorted(np.flatnonzero(exact_l & ~exact_b), key=lambda j: -wrong_b[j])
    only_b = sorted(np.flatnonzero(exact_b & ~exact_l), key=lambda j: -wrong_l[j])
    head = lambda m: {k: m[k] for k in ("micro_f1", "macro_f1", "samples_f1", "exact_match")}  # noqa: E731
    deltas = np.array([r["f1_delta"] for r in per_class])
    return {
        "problem_type": MULTI, "n": len(ids), "model": model, "llm": head(ml), "baseline": head(mb),
        "per_class": per_class,
        "counts": {"only_llm_exact": len(only_l), "only_baseline_exact": len(only_b),
                   "both_exact": int((exact_l & exact_b).sum()), "neither_exact": int((~exact_l & ~exact_b).sum()),
                   "labels_llm_better": int((deltas > 0).sum()), "labels_baseline_better": int((deltas < 0).sum()),
                   "labels_tied": int((deltas == 0).sum())},
        "only_llm_right": [row(j) for j in only_l[:examples]],
        "only_baseline_right": [row(j) for j in only_b[:examples]],
    }


ERROR_EDGES = (0.1, 0.25, 0.5, 1.0, 2.0)  # absolute-error buckets, in standard deviations of the gold scores


def compare_regression(llm: dict, base: dict, ids: list, examples: int = 20, model: str = "cls run") -> dict:
    """Regression comparison: MAE / RMSE / Pearson / Spearman of both, how many rows fall in each absolute-error
    bucket (edges: ERROR_EDGES x the gold scores' standard deviation), MAE per fifth of the gold range (where each
    model wins) and the rows where one model is much closer."""
    import numpy as np

    from .metrics import regression_metrics

    gold = np.array([float(llm[i]["gold"]) for i in ids])
    pl = np.array([float(llm[i]["predicted"]) for i in ids])
    pb = np.array([float(base[i]["predicted"]) for i in ids])
    ml, mb = regression_metrics(gold, pl), regression_metrics(gold, pb)
    el, eb = np.abs(pl - gold), np.abs(pb - gold)
    sd = float(gold.std()) or 1.0
    edges = [0.0] + [e * sd for e in ERROR_EDGES] + [float("inf")]
    buckets = [{"from": lo, "to": None if hi == float("inf") else hi,
                "rows_llm": int(((el >= lo) & (el < hi)).sum()), "rows_baseline": int(((eb >= lo) & (eb < hi)).sum())}
               for lo, hi in zip(edges[:-1], edges[1:])]
    cuts = np.unique(np.quantile(gold, [0.2, 0.4, 0.6, 0.8]))
    part = np.searchsorted(cuts, gold, side="right")
    by_range = []
    for b in range(len(cuts) + 1):
        sel = part == b
        if not sel.any():
            continue
        by_range.append({"from": float(gold[sel].min()), "to": float(gold[sel].max()), "rows": int(sel.sum()),
                         "mae_llm": float(el[sel].mean()), "mae_baseline": float(eb[sel].mean()),
                         "llm_closer": int((el[sel] < eb[sel]).sum()), "baseline_closer": int((eb[sel] < el[sel]).sum())})

    def row(j):
        i = ids[j]
        r = {"id": i, "gold": float(gold[j]), "llm": float(pl[j]), "baseline": float(pb[j]),
             "error_llm": float(el[j]), "error_baseline": float(eb[j])}
        if base[i].get("text"):
            r["text"] = base[i]["text"]
        return r

    gain = eb - el
    closer_l = sorted(np.flatnonzero(gain > 0), key=lambda j: -gain[j])
    closer_b = sorted(np.flatnonzero(gain < 0), key=lambda j: gain[j])
    head = lambda m: {k: m[k] for k in ("mae", "rmse", "pearson", "spearman")}  # noqa: E731
    return {
        "problem_type": REGRESSION, "n": len(ids), "model": model, "llm": head(ml), "baseline": head(mb),
        "gold_std": sd, "error_buckets": buckets, "by_gold_range": by_range,
        "counts": {"llm_closer": len(closer_l), "baseline_closer": len(closer_b), "tied": int((gain == 0).sum())},
        "only_llm_right": [row(j) for j in closer_l[:examples]],
        "only_baseline_right": [row(j) for j in closer_b[:examples]],
    }



def make_compare(run_dir, baseline=None, confident: float | None = None, examples: int = 20,
                 output=None) -> tuple[Path, dict]:
    """Compare ``run_dir``'s predictions with the baseline's (default: RUN_DIR/baseline); write compare.json,
    compare.md and a chart (f1_delta.png; regression: mae_by_range.png) into ``output`` (default: RUN_DIR/compare).
    Returns (folder, comparison)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    llm = read_predictions(run_dir / PREDICTIONS, "the cls run (train with do_predict: true)")
    base_dir = Path(baseline) if baseline else run_dir / BASELINE_DIR
    base = read_predictions(base_dir / PREDICTIONS, "the baseline (run `llamafactory-ext baseline RECIPE` first)")
    c = compare_predictions(llm, base, confident, examples, model=model_name(run_dir))
    out = Path(output) if output else run_dir / COMPARE_DIR
    out.mkdir(parents=True, exist_ok=True)
    md = compare_markdown(c, str(run_dir))
    write_json(out / "compare.json", c)
    with atomic_write(out / "compare.md") as f:
        f.write(md)
    if c.get("problem_type") == REGRESSION:
        plot_mae_by_range(c, out / "mae_by_range.png")
    else:
        plot_f1_delta(c, out / "f1_delta.png")
    return out, c
