"""``python -m ringrift.db``: see :mod:`ringrift.db.cli`."""

import sys

from .cli import main

sys.exit(main())
