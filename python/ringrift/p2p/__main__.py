from ..cli import run_command

run_command("ringrift.p2p.cli")  # start-up, exit and the process set-up of ringrift/cli.py
