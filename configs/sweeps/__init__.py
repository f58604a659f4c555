"""Sweep tables as configs: `tasks.TASKS`, `methods.METHODS`, `grids.GRIDS` (`launch/sweep.py`)."""
