"""``python -m moe_cli`` runs the ``moe-imaging`` command line."""

import sys

from .main import main

sys.exit(main())
