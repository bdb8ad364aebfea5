"""Old name, kept while branches merge: see :mod:`.recipe.checks` and :mod:`.validate_report`."""

from .recipe.checks import (LIST_OK, QUANT_BITS, RANGES, ROWS_TO_READ, _combination_problems, _dataset_problems,
                            _range_problems, _type_problems, check)
from .validate_report import validate_dict, validate_file

__all__ = ["LIST_OK", "QUANT_BITS", "RANGES", "ROWS_TO_READ", "_combination_problems", "_dataset_problems",
           "_range_problems", "_type_problems", "check", "validate_dict", "validate_file"]
