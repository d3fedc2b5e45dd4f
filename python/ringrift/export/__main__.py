import sys

from ..cli import prepare_process

prepare_process()  # before numpy loads (ringrift/cli.py)
from .cli import main  # noqa: E402

sys.exit(main())
