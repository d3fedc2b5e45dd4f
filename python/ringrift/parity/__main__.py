from ..cli import run_command

run_command("ringrift.parity.cli")  # start-up, exit and the process set-up of ringrift/cli.py
