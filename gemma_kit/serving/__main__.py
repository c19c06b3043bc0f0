"""``python -m gemma_kit.serving [flags]``: the same as ``gemma-kit serve [flags]``."""

import sys

from .server import main

sys.exit(main())
