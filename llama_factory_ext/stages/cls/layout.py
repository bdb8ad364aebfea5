"""File names in a cls run folder."""

MANIFEST = "cls_run.json"
