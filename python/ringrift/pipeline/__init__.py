"""The pipeline orchestrator: phases run locally or dispatched to hosts."""
