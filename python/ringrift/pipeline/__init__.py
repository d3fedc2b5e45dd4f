"""The pipeline orchestrator: phases run locally or dispatched to hosts.

From Python (a notebook, a script), the same phases as `ringrift-pipeline run ...`:

    from ringrift import pipeline
    pipeline.run_selfplay(1000, board="square8", output_db="games.db", state="state.json")
    pipeline.run_parity("games.db", state="state.json")
    pipeline.run_export("games.db", "npz", state="state.json")
    pipeline.run_all(1000, board="square8", output_db="games.db", output_dir="npz")
"""

from .api import run_all, run_export, run_parity, run_selfplay

__all__ = ["run_all", "run_export", "run_parity", "run_selfplay"]
