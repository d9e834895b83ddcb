"""``python -m poisson_nmf``."""

import sys

from .cli import main

sys.exit(main())
