"""What a sweep is made of, and the files a sweep run writes (shared by the runner and results).

A sweep's tables are configs (`configs/sweeps/`): tasks (a config file plus overrides), methods
(`Method`: named override sets) and grids (`Grid` of `Cell`s: tasks x methods x shots x noise,
with seeds and scale overrides). The work-directory files every run has (config.json,
eval_results.json, episode_accuracies.npy, metrics.jsonl) are named in `meta_align_jax.io`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

RUN_FILE = 'sweep_run.json'    # the run's labels, written before it starts
ERROR_FILE = 'error.txt'
LOCK_FILE = 'running.pid'      # pid of the process running the run (several runners share a root)
LOG_FILE = 'log.txt'


@dataclasses.dataclass(frozen=True)
class Method:
  """A named override set. `role`: ours | baseline | ablation | oracle (the upper bound)."""
  role: str
  description: str
  overrides: dict
  # Called with the config after the overrides, shots and noise are set (derived fields).
  finalize: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Cell:
  """Part of a grid: these tasks x methods x shots x noise rates (x the grid's seeds)."""
  tasks: tuple[str, ...]
  methods: tuple[str, ...]
  shots: tuple[int, ...] = (1,)
  noise: tuple[float, ...] = (0.0,)


@dataclasses.dataclass(frozen=True)
class Grid:
  cells: tuple[Cell, ...]
  seeds: tuple[int, ...] = (0, 1, 2)
  scale: dict = dataclasses.field(default_factory=dict)   # overrides of every run (steps, episodes)
  description: str = ''
