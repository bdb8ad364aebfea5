from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

METRICS = {"single_label": ("accuracy", "macro_f1", "weighted_f1"),
           "multi_label": ("micro_f1", "macro_f1", "samples_f1", "exact_match"),
           "regression": ("mae", "rmse", "pearson", "spearman")}  # what each problem type reports
LOWER_IS_BETTER = ("mae", "rmse")
HF_PROBLEM_TYPES = {"single_label": "single_label_classification", "multi_label": "multi_label_classification",
                    "regression": "regression"}  # transformers' `config.problem_type` of each problem type


def metric_problem(name, problem_type: str):
    """Why ``metric_for_best_model: name`` cannot rank a run of this problem type (it is not reported), or None."""
    if not name or not isinstance(name, str):
        return None
    known = METRICS[problem_type] + ("loss",)
    if name.removeprefix("eval_") in known:
        return None
    return f"key `metric_for_best_model`: {name} is not reported by a {problem_type} run; use one of {', '.join(known)}"


class ClsArgs(BaseModel):
    """YAML keys of the cls stage."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, defer_build=True)

    cls_problem_type: Literal["auto", "single_label", "multi_label", "regression"] = "auto"
    """What each row's label is: `single_label` (one label), `multi_label` (a list of labels, possibly several or
    none), `regression` (a real number, the score). `auto`: read from the train labels (lists: multi_label, numbers
    with a fractional part: regression, else single_label)."""
    cls_label_delimiter: Optional[str] = None
    """multi_label: labels written as one string joined by this delimiter (e.g. `|` or `,`); default: a JSON list."""
    cls_allow_empty_labels: bool = True
    """multi_label: a row with an empty label list (no label applies) is a negative for every label; false refuses
    such rows."""
    cls_regression_loss: Literal["mse", "huber"] = "mse"
    """regression: the training loss on the standardised targets (huber: less pulled by outliers, delta 1 std)."""
    label_names: Optional[list[str]] = None
    """The label set, in order (default: the sorted labels of the train split)."""
    class_weights: Union[None, Literal["balanced"], list[float], dict[str, float]] = None
    """Loss weights per class: `balanced` (n / (k * count)), a list in label order, or {label: weight}. multi_label:
    per-label positive weights (`balanced`: negatives / positives of each label in train)."""
    cls_template: Optional[str] = None
    """Optional prompt around the text, with `{text}` (and `{text_pair}`) placeholders."""
    test_dataset: Union[None, str, list[str]] = None
    """Datasets predicted with `do_predict` (default: the eval split)."""
    cls_label_normalize: bool = True
    """Compare labels (in the data and in `label_names`) after Unicode NFC normalisation with surrounding whitespace
    stripped, so 'spam ' and 'spam' are one class; a warning names the labels this merges and labels that differ
    only by case. false: keep labels exactly as written."""
    cls_length_buckets: int = Field(0, ge=0)
    """Opt-in speed-up: random batches of similar length (shuffle, sort each window of this many batches
    by length, shuffle the batches); 0 = plain random order. Ignored when `train_sampling_strategy` is set."""

    @field_validator("label_names", mode="before")
    @classmethod
    def _labels_as_str(cls, v):
        if v is None:
            return v
        if not isinstance(v, (list, tuple)) or len(v) < 2:
            raise ValueError("give at least two labels as a list")
        bad = [x for x in v if isinstance(x, bool) or not isinstance(x, (str, int)) or not str(x).strip()]
        if bad:
            raise ValueError(f"labels are non-empty strings or integers, got {bad[0]!r}")
        return [str(x) for x in v]

    @field_validator("cls_template")
    @classmethod
    def _template_has_text(cls, v):
        if v is not None and "{text}" not in v:
            raise ValueError("must contain the placeholder {text}")
        return v

    @field_validator("cls_label_delimiter")
    @classmethod
    def _delimiter(cls, v):
        if v is not None and not v.strip():
            raise ValueError("give a visible delimiter such as '|' or ','")
        return v
