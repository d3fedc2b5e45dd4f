"""``python -m ringrift.db``: see :mod:`ringrift.db.cli`."""

from ..cli import run_command

run_command("ringrift.db.cli")  # start-up, exit and the process set-up of ringrift/cli.py
