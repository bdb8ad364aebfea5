"""``python -m llama_factory_ext.cli``: the same as ``llamafactory-ext``."""

import sys

from . import main

sys.exit(main())
