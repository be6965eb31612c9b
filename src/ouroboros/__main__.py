"""``python -m ouroboros``: the ``ouroboros`` command (ouroboros.cli)."""

import sys

from ouroboros.cli import main

sys.exit(main())
