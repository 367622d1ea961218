"""``python -m pipelines`` runs the ``anodescope`` command line."""

import sys

from .cli import main

sys.exit(main())
