"""vsched experiment runner, as a package (scripts/experiment.py is its entry point)."""
