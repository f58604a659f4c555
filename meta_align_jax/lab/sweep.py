"""Experiment sweeps: named grids of tasks x methods x shots x noise x seeds, run into one directory.

The tables are configs: `configs/sweeps/` (`tasks.TASKS`, `methods.METHODS`, `grids.GRIDS`).
A *run* is one (task, method, shots, noise, seed): a config file of `configs/` (the task), the
method's overrides (baselines and ablations are override sets, `METHODS`), the shot and noise
settings, the seed and the grid's scale overrides (steps, episodes). Each run trains with
`train.train` in `ROOT/<task>/<method>/k<shots>_n<noise%>/seed<seed>/` and is evaluated with
`evaluate.evaluate` on the final (or best meta-validation) checkpoint; on top of
`eval_results.json` the run writes `episode_accuracies.npy`, the accuracy of every fixed
meta-test episode, so that methods can be compared episode by episode (same seed -> same class
split and same episodes, whatever the method). A run whose `eval_results.json` exists is
finished and skipped, so a sweep can be interrupted and started again.

Shots K set `task.shots` and `eval.shots`; noise rate r sets `data.target_noise` and
`data.align_noise`: every target label a method observes (target training tasks, alignment pairs,
and the supports of meta-test episodes) is flipped with probability r (queries stay clean).

`launch/sweep.py` is the command line; `lab.results` aggregates, `lab.plots` draws.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Callable, Iterable

from configs.sweeps.grids import GRIDS
from configs.sweeps.methods import METHODS
from configs.sweeps.tasks import TASKS
from meta_align_jax import lowres
from meta_align_jax.io import EPISODES_FILE, RESULTS_FILE  # noqa: F401  (a finished run's files)
from meta_align_jax.io import write_atomic
from meta_align_jax.lab.spec import ERROR_FILE, LOCK_FILE, LOG_FILE, RUN_FILE
from meta_align_jax.lab.spec import Cell, Grid, Method  # noqa: F401  (the tables' types)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------- runs


@dataclasses.dataclass(frozen=True)
class RunSpec:
  task: str
  method: str
  shots: int
  noise: float
  seed: int
  overrides: tuple[tuple[str, object], ...] = ()   # scale + user overrides, applied last

  @property
  def relpath(self) -> str:
    return os.path.join(self.task, self.method, f'k{self.shots}_n{int(round(100 * self.noise))}',
                        f'seed{self.seed}')

  def labels(self) -> dict:
    return {'task': self.task, 'method': self.method, 'shots': self.shots, 'noise': self.noise,
            'seed': self.seed, 'role': METHODS[self.method].role,
            'overrides': {k: v for k, v in self.overrides}}


def grid_runs(grid: Grid | str, *, seeds: Iterable[int] | None = None,
              overrides: dict | None = None) -> list[RunSpec]:
  """The runs of `grid` (a `Grid` or a name of `GRIDS`), deduplicated, in a stable order.

  Seeds are the outer loop: the first runs done are one seed of every cell, so a sweep cut
  short still compares every method.
  """
  if isinstance(grid, str):
    if grid not in GRIDS:
      raise ValueError(f'Unknown grid {grid!r}; known: {sorted(GRIDS)} (configs/sweeps/grids.py).')
    grid = GRIDS[grid]
  extra = tuple(sorted({**grid.scale, **(overrides or {})}.items()))
  out, seen = [], set()
  for seed in (grid.seeds if seeds is None else seeds):
    for cell in grid.cells:
      for task in cell.tasks:
        if task not in TASKS:
          raise ValueError(f'Unknown task {task!r}; known: {sorted(TASKS)}.')
        for method in cell.methods:
          if method not in METHODS:
            raise ValueError(f'Unknown method {method!r}; known: {sorted(METHODS)}.')
          for shots in cell.shots:
            for noise in cell.noise:
              spec = RunSpec(task, method, int(shots), float(noise), int(seed), extra)
              if spec.relpath not in seen:
                seen.add(spec.relpath)
                out.append(spec)
  return out


def set_field(config, dotted: str, value) -> None:
  *parents, leaf = dotted.split('.')
  node = config
  for p in parents:
    node = node[p]
  if leaf not in node:
    raise KeyError(f'config.{dotted} does not exist.')
  current = node[leaf]
  if isinstance(current, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  node[leaf] = value


def parse_value(text: str):
  """'0.5' -> 0.5, "('target',)" -> ('target',), 'True' -> True; anything else stays a string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def load_config_file(path: str):
  path = path if os.path.isabs(path) else os.path.join(REPO, path)
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  spec = importlib.util.spec_from_file_location(
      f'_sweep_config_{os.path.splitext(os.path.basename(path))[0]}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def build_config(spec: RunSpec):
  """The config of one run: task file, task extras, method, shots, noise, seed, overrides."""
  path, task_extra = TASKS[spec.task]
  config = load_config_file(path)
  method = METHODS[spec.method]
  for k, v in {**task_extra, **method.overrides}.items():
    set_field(config, k, v)
  config.seed = spec.seed
  config.task.shots = config.eval.shots = spec.shots
  config.data.target_noise = config.data.align_noise = spec.noise
  for k, v in spec.overrides:
    set_field(config, k, v)
  lowres.apply(config)   # the low-resource protocol's derived fields (no-op when off)
  if method.finalize is not None:
    method.finalize(config)
  return config


def is_finished(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, RESULTS_FILE))


def run_one(spec: RunSpec, workdir: str) -> dict:
  """Trains and evaluates one run in `workdir` (resuming); returns its eval results."""
  from meta_align_jax import train  # pylint: disable=g-import-not-at-top
  config = build_config(spec)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, RUN_FILE), 'w') as f:
    json.dump(spec.labels(), f, indent=1)
  # Evaluates the checkpoint train.select picks, with the compiled functions of meta-validation,
  # inside the work directory's lock; writes episode_accuracies.npy, then eval_results.json.
  result = train.train_and_evaluate(config, workdir)
  if not result.finished:
    raise RuntimeError(f'Training of {workdir} stopped at step {result.step} (signal '
                       f'{result.stopped_by}); run the sweep again to resume.')
  return result.eval_results


def _main_one(argv: list[str]) -> None:
  """`python -m meta_align_jax.lab.sweep RUN_JSON WORKDIR`: one run (`run_grid`'s workers)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  from meta_align_jax import checkpoint  # pylint: disable=g-import-not-at-top
  checkpoint.quiet_orbax_logs()
  with open(argv[0]) as f:
    d = json.load(f)
  spec = RunSpec(d['task'], d['method'], d['shots'], d['noise'], d['seed'],
                 tuple((k, tuple(v) if isinstance(v, list) else v)
                       for k, v in sorted(d['overrides'].items())))
  run_one(spec, argv[1])


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def take_lock(workdir: str) -> bool:
  """Atomically claims `workdir` for this process; False when a live process holds it."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      try:
        with open(path) as f:
          pid = int(f.read().strip() or 0)
      except (OSError, ValueError):
        pid = 0
      if pid and _alive(pid):
        return False
      try:
        os.remove(path)   # stale: its process is gone
      except FileNotFoundError:
        pass
      continue
    with os.fdopen(fd, 'w') as f:
      f.write(str(os.getpid()))
    return True
  return False


def _set_lock(workdir: str, pid: int | None) -> None:
  path = os.path.join(workdir, LOCK_FILE)
  if pid is None:
    if os.path.exists(path):
      os.remove(path)
    return
  with open(path + '.tmp', 'w') as f:
    f.write(str(pid))
  os.replace(path + '.tmp', path)


def worker_env(env: dict | None = None) -> dict:
  """The environment of a run's worker process: ours, `env`, and the repository on PYTHONPATH."""
  out = dict(os.environ, **(env or {}))
  out['PYTHONPATH'] = REPO + os.pathsep + out.get('PYTHONPATH', '')
  return out


def start_worker(module: str, args: list[str], workdir: str, env: dict):
  """Starts `python -m module *args` for the run in `workdir`, its output appended to
  WORKDIR/log.txt (an earlier error.txt is removed). Returns (process, open log file)."""
  if os.path.exists(os.path.join(workdir, ERROR_FILE)):
    os.remove(os.path.join(workdir, ERROR_FILE))
  logf = open(os.path.join(workdir, LOG_FILE), 'a')
  proc = subprocess.Popen([sys.executable, '-m', module, *args], stdout=logf,
                          stderr=subprocess.STDOUT, cwd=REPO, env=env)
  return proc, logf


def end_worker(relpath: str, workdir: str, proc, t0: float, status: dict,
               log: Callable[[str], None], *, stopping: bool = False) -> None:
  """Files a finished worker under status 'done', 'stopped' (stopping: a budget's SIGTERM) or
  'failed' (its log's tail goes to WORKDIR/error.txt), and logs one line."""
  if proc.returncode == 0 and is_finished(workdir):
    status['done'].append(relpath)
    with open(os.path.join(workdir, RESULTS_FILE)) as f:
      acc = json.load(f).get('accuracy_mean', float('nan'))
    log(f'done  {relpath} in {time.time() - t0:.0f} s: accuracy {100 * acc:.2f} %')
  elif stopping:
    status['stopped'].append(relpath)
    log(f'stopped {relpath} (resumes on the next call)')
  else:
    status['failed'].append(relpath)
    with open(os.path.join(workdir, LOG_FILE)) as f:
      tail = f.read()[-4000:]
    write_atomic(os.path.join(workdir, ERROR_FILE), tail)
    log(f'FAIL  {relpath} (exit {proc.returncode}); see {workdir}/{ERROR_FILE}')


def run_grid(specs: list[RunSpec], root: str, *, jobs: int = 1, dry_run: bool = False,
             log: Callable[[str], None] = print, env: dict | None = None) -> dict[str, list]:
  """Runs the unfinished `specs` under `root`, `jobs` at a time, each in its own process.

  Returns {'skipped': [...], 'done': [...], 'failed': [...]} of relpaths. A failed run leaves
  `error.txt` (its log's tail) and does not stop the sweep. A run is claimed with a lock file
  (`running.pid`) just before it starts, so several runners can work on one root: each skips
  runs that are finished or held by a live process.
  """
  status = {'skipped': [], 'done': [], 'failed': [], 'pending': [], 'busy': []}
  todo = []
  for spec in specs:
    workdir = os.path.join(root, spec.relpath)
    if is_finished(workdir):
      status['skipped'].append(spec.relpath)
    else:
      todo.append(spec)
  log(f'{len(specs)} runs: {len(status["skipped"])} finished, {len(todo)} to run.')
  if dry_run:
    status['pending'] = [s.relpath for s in todo]
    return status
  running: list[tuple[RunSpec, subprocess.Popen, float, object]] = []
  proc_env = worker_env(env)

  def start(spec):
    workdir = os.path.join(root, spec.relpath)
    if is_finished(workdir) or not take_lock(workdir):
      status['busy'].append(spec.relpath)
      log(f'skip  {spec.relpath} (finished or running elsewhere)')
      return
    spec_path = os.path.join(workdir, RUN_FILE)
    with open(spec_path, 'w') as f:
      json.dump(spec.labels(), f, indent=1)
    proc, logf = start_worker('meta_align_jax.lab.sweep', [spec_path, workdir], workdir, proc_env)
    _set_lock(workdir, proc.pid)
    log(f'start {spec.relpath} (pid {proc.pid})')
    running.append((spec, proc, time.time(), logf))

  queue = list(todo)
  while queue or running:
    while queue and len(running) < max(1, jobs):
      start(queue.pop(0))
    time.sleep(2)
    for item in list(running):
      spec, proc, t0, logf = item
      if proc.poll() is None:
        continue
      running.remove(item)
      logf.close()
      workdir = os.path.join(root, spec.relpath)
      _set_lock(workdir, None)
      end_worker(spec.relpath, workdir, proc, t0, status, log)
  return status


def select_runs(grid: str, *, seeds=None, sets=(), tasks=None, methods=None, shots=None,
                noise=None) -> list[RunSpec]:
  """The launchers' run selection: `grid`'s runs with their flags' strings applied (--seeds,
  --set field=value, and the --tasks/--methods/--shots/--noise filters; None or empty: all).
  ValueError names a bad flag value or a selection that leaves no run."""
  specs = grid_runs(grid, seeds=[int(s) for s in seeds] if seeds else None,
                    overrides=parse_overrides(sets))
  keep = {'task': tasks, 'method': methods, 'shots': [int(k) for k in shots or ()],
          'noise': [float(n) for n in noise or ()]}
  specs = [s for s in specs if all(not v or getattr(s, k) in v for k, v in keep.items())]
  if not specs:
    raise ValueError('No run left after --tasks/--methods/--shots/--noise.')
  return specs


def parse_overrides(items) -> dict:
  """`field=value` strings (the launchers' --set) -> {field: value}; ValueError names a bad one."""
  overrides = {}
  for item in items:
    key, sep, value = item.partition('=')
    if not sep:
      raise ValueError(f'--set {item!r}: use field=value.')
    overrides[key] = parse_value(value)
  return overrides


if __name__ == '__main__':
  _main_one(sys.argv[1:])
