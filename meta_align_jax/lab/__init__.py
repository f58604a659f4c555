"""Experiment tooling: sweeps of runs, their tables and plots, the premise gate. Never imported
by the core.

- `spec`: what a sweep is made of (methods, cells, grids) and the files a sweep run writes.
- `sweep`: the runner (`launch/sweep.py`); the task, method and grid tables are configs
  (`configs/sweeps/`).
- `results`: aggregation and statistics (`launch/compare.py`); `plots`: the sweep's figures.
- `premise`: the premise gate (`launch/premise.py`): method-independent measurements of a task.

These modules need the repository checkout (the `configs` package) on the path, as the launch
scripts and the tests have it.
"""
