"""Old name, kept while branches merge: see :mod:`.recipe.checks` and :mod:`.validate_report`."""

from .recipe.checks import LIST_OK, QUANT_BITS, RANGES, ROWS_TO_READ, check
from .validate_report import validate_dict, validate_file

__all__ = ["LIST_OK", "QUANT_BITS", "RANGES", "ROWS_TO_READ", "check", "validate_dict", "validate_file"]
