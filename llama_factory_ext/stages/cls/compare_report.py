"""compare.md, the one-line summary and the charts of a cls run against its TF-IDF baseline."""

from __future__ import annotations

from pathlib import Path

from ...safeio import atomic_path
from .baseline import MULTI, REGRESSION, SINGLE


def _side_by_side(c: dict, keys, heads) -> list[str]:
    """Markdown table of both models' headline metrics and their difference."""
    L, B, name = c["llm"], c["baseline"], c.get("model", "cls run")
    return [f"| | {' | '.join(heads)} |", "|---|" + "---:|" * len(keys),
            f"| {name if name == 'cls run' else name + ' (cls run)'} | " + " | ".join(f"{L[x]:.4f}" for x in keys) + " |",
            "| TF-IDF baseline | " + " | ".join(f"{B[x]:.4f}" for x in keys) + " |",
            "| delta | " + " | ".join(f"{L[x] - B[x]:+.4f}" for x in keys) + " |"]


def _example_sections(c: dict, sections, head: str, cells) -> list[str]:
    """One markdown section per (title, key) listing the example rows ``c[key]``, or "none"."""
    lines = []
    for title, key in sections:
        lines += ["", f"## {title}", ""]
        if not c[key]:
            lines.append("none")
            continue
        lines += [head, "|" + "---|" * head.count(" | ") + "---|"]
        lines += [cells(r) for r in c[key]]
    return lines


def _md_multilabel(c: dict, run_dir: str) -> str:
    name, k = c.get("model", "cls run"), c["counts"]
    lines = [f"# {run_dir}: {name} vs TF-IDF baseline (multi-label)", "", f"{c['n']} rows.", "",
             *_side_by_side(c, ("micro_f1", "macro_f1", "samples_f1", "exact_match"),
                            ("micro-F1", "macro-F1", "samples-F1", "exact match")), "",
             f"## Per-label F1: {name} better on {k['labels_llm_better']}, TF-IDF on {k['labels_baseline_better']}, "
             f"tied on {k['labels_tied']}", "",
             f"| label | support | {name} | TF-IDF | delta |", "|---|---:|---:|---:|---:|"]
    for r in sorted(c["per_class"], key=lambda r: r["f1_delta"]):
        lines.append(f"| {r['label']} | {r['support']} | {r['f1_llm']:.4f} | {r['f1_baseline']:.4f} | {r['f1_delta']:+.4f} |")
    joined = lambda labels: _clip(", ".join(labels), 80)  # noqa: E731
    lines += _example_sections(
        c, ((f"Only {name} gets the label set exactly right: {k['only_llm_exact']}", "only_llm_right"),
            (f"Only TF-IDF gets the label set exactly right: {k['only_baseline_exact']}", "only_baseline_right")),
        f"| id | gold | {name} | TF-IDF | text |",
        lambda r: f"| {_clip(r['id'], 60)} | {joined(r['gold'])} | {joined(r['llm'])} | {joined(r['baseline'])} | "
                  f"{_clip(r.get('text', ''))} |")
    return "\n".join(lines) + "\n"


def _md_regression(c: dict, run_dir: str) -> str:
    name, k = c.get("model", "cls run"), c["counts"]
    lines = [f"# {run_dir}: {name} vs TF-IDF baseline (regression)", "",
             f"{c['n']} rows; {name} is closer on {k['llm_closer']}, TF-IDF on {k['baseline_closer']}, tied on {k['tied']}.", "",
             *_side_by_side(c, ("mae", "rmse", "pearson", "spearman"), ("MAE", "RMSE", "Pearson", "Spearman")), "",
             f"## Absolute error (gold standard deviation {c['gold_std']:.4g})", "",
             f"| absolute error | rows {name} | rows TF-IDF |", "|---|---:|---:|"]
    for b in c["error_buckets"]:
        span = f"{b['from']:.4g} - {b['to']:.4g}" if b["to"] is not None else f">= {b['from']:.4g}"
        lines.append(f"| {span} | {b['rows_llm']} | {b['rows_baseline']} |")
    lines += ["", "## Where each model wins: MAE per fifth of the gold range", "",
              f"| gold from | to | rows | MAE {name} | MAE TF-IDF | {name} closer | TF-IDF closer |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for b in c["by_gold_range"]:
        lines.append(f"| {b['from']:.4g} | {b['to']:.4g} | {b['rows']} | {b['mae_llm']:.4f} | {b['mae_baseline']:.4f} | "
                     f"{b['llm_closer']} | {b['baseline_closer']} |")
    lines += _example_sections(
        c, ((f"{name} much closer (top {len(c['only_llm_right'])})", "only_llm_right"),
            (f"TF-IDF much closer (top {len(c['only_baseline_right'])})", "only_baseline_right")),
        f"| id | gold | {name} | TF-IDF | text |",
        lambda r: f"| {_clip(r['id'], 60)} | {r['gold']:.4g} | {r['llm']:.4g} | {r['baseline']:.4g} | {_clip(r.get('text', ''))} |")
    return "\n".join(lines) + "\n"


def plot_mae_by_range(c: dict, path: Path) -> None:
    """Bars: MAE of both models per fifth of the gold range (regression compare)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    name, rows = c.get("model", "cls run"), c["by_gold_range"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    ax.bar(x - 0.2, [r["mae_llm"] for r in rows], width=0.4, color="#2e86c1", label=f"{name} (MAE {c['llm']['mae']:.3f})")
    ax.bar(x + 0.2, [r["mae_baseline"] for r in rows], width=0.4, color="#c0392b",
           label=f"TF-IDF (MAE {c['baseline']['mae']:.3f})")
    ax.set_xticks(x, [f"{r['from']:.3g}..{r['to']:.3g}" for r in rows], fontsize=8)
    ax.set_xlabel("gold value range (fifths of the rows)")
    ax.set_ylabel("mean absolute error")
    ax.legend(fontsize=8)
    ax.set_title(f"MAE per gold range: {name} vs TF-IDF baseline ({c['n']:,} rows)", fontsize=10)
    _save_chart(fig, path)


def compare_summary(c: dict) -> str:
    """One line of a comparison (what the CLI prints)."""
    L, B, k, name = c["llm"], c["baseline"], c["counts"], c["model"]
    kind = c.get("problem_type", SINGLE)
    if kind == MULTI:
        return (f"{name}: micro-F1 {L['micro_f1']:.4f} / macro-F1 {L['macro_f1']:.4f}; TF-IDF {B['micro_f1']:.4f} / "
                f"{B['macro_f1']:.4f}; per-label F1 better for {name} on {k['labels_llm_better']} labels, for TF-IDF on "
                f"{k['labels_baseline_better']}")
    if kind == REGRESSION:
        return (f"{name}: MAE {L['mae']:.4f} / Spearman {L['spearman']:.4f}; TF-IDF {B['mae']:.4f} / {B['spearman']:.4f}; "
                f"{name} closer on {k['llm_closer']} rows, TF-IDF on {k['baseline_closer']}")
    return (f"{name}: accuracy {L['accuracy']:.4f} / macro-F1 {L['macro_f1']:.4f}; TF-IDF {B['accuracy']:.4f} / {B['macro_f1']:.4f}; "
            f"only {name} right {k['only_llm_right']}, only TF-IDF right {k['only_baseline_right']}, "
            f"suspected mislabels {k['suspected_mislabels']} (of {k['both_wrong_agreeing']} rows where both agree "
            f"against the gold label)")


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def compare_markdown(c: dict, run_dir: str) -> str:
    if c.get("problem_type") == MULTI:
        return _md_multilabel(c, run_dir)
    if c.get("problem_type") == REGRESSION:
        return _md_regression(c, run_dir)
    L, B, name = c["llm"], c["baseline"], c.get("model", "cls run")
    lines = [f"# {run_dir}: {name} vs TF-IDF baseline", "", f"{c['n']} rows.", "",
             "| | accuracy | macro-F1 |", "|---|---:|---:|",
             f"| {name if name == 'cls run' else name + ' (cls run)'} | {L['accuracy']:.4f} | {L['macro_f1']:.4f} |",
             f"| TF-IDF baseline | {B['accuracy']:.4f} | {B['macro_f1']:.4f} |",
             f"| delta | {L['accuracy'] - B['accuracy']:+.4f} | {L['macro_f1'] - B['macro_f1']:+.4f} |", "",
             "## Per-class F1", "", f"| label | support | {name} | TF-IDF | delta |", "|---|---:|---:|---:|---:|"]
    for r in sorted(c["per_class"], key=lambda r: r["f1_delta"]):
        lines.append(f"| {r['label']} | {r['support']} | {r['f1_llm']:.4f} | {r['f1_baseline']:.4f} | {r['f1_delta']:+.4f} |")
    k = c["counts"]
    considered = k.get("both_wrong_agreeing", k["suspected_mislabels"])
    rule = (f"{considered} rows where both models predict the same label against the gold one"
            + (f"; {k['suspected_mislabels']} of them with p >= {c['confident']} in both" if c.get("confident") is not None else "")
            + "; ranked by evidence: the smaller of the two margins p(predicted) - p(gold)")
    sections = [(f"Only {name} is right", "only_llm_right", k["only_llm_right"], None),
                ("Only TF-IDF is right", "only_baseline_right", k["only_baseline_right"], None),
                ("Suspected mislabels", "suspected_mislabels", k["suspected_mislabels"], rule)]
    for title, key, count, note in sections:
        lines += ["", f"## {title}: {count}", ""]
        if note:
            lines += [note + (f" (top {len(c[key])} listed)" if len(c[key]) < count else "") + ".", ""]
        if not c[key]:
            lines.append("none")
            continue
        margin = key == "suspected_mislabels"
        lines += [f"| id | gold | {name} (p) | TF-IDF (p) |" + (" margin |" if margin else "") + " text |",
                  "|---|---|---|---|" + ("---:|" if margin else "") + "---|"]
        for r in c[key]:
            pl = f"{r['p_llm']:.2f}" if r["p_llm"] is not None else "?"
            pb = f"{r['p_baseline']:.2f}" if r["p_baseline"] is not None else "?"
            extra = f" {r['margin']:.2f} |" if margin else ""
            lines.append(f"| {_clip(r['id'], 60)} | {r['gold']} | {r['llm']} ({pl}) | {r['baseline']} ({pb}) |{extra} {_clip(r.get('text', ''))} |")
    return "\n".join(lines) + "\n"


def plot_f1_delta(c: dict, path: Path) -> None:
    """Horizontal bars: per-class F1 (the cls run's model minus the TF-IDF baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = c.get("model", "cls run")
    rows = sorted(c["per_class"], key=lambda r: r["f1_delta"])
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.28 * len(rows) + 1.4)))
    deltas = [r["f1_delta"] for r in rows]
    ax.barh([r["label"] for r in rows], deltas, color=["#c0392b" if d < 0 else "#2e86c1" for d in deltas])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.tick_params(axis="y", labelsize=max(5, 10 - len(rows) // 10))
    ax.set_xlabel(f"F1 difference per label ({name} minus TF-IDF; blue: {name} better, red: TF-IDF better)", fontsize=8)
    ax.set_title(f"Per-label F1: {name} vs TF-IDF baseline ({c['n']:,} rows)\n"
                 f"macro-F1: {name} {c['llm']['macro_f1']:.3f}, TF-IDF {c['baseline']['macro_f1']:.3f}", fontsize=10)
    _save_chart(fig, path)


def _save_chart(fig, path: Path) -> None:
    """Lay out ``fig``, write it to ``path`` as PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
