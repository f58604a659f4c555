"""A study (issue 17 part 4): a sweep exported here, trained on an accelerator without TensorFlow.

Two steps, two machines:

  export (this machine, TensorFlow and the datasets): every run of a grid gets its resolved config
    (STUDY/configs/<run>.json) and a data bundle (`data/export.py`). Runs whose data agree on every
    field a bundle depends on share one bundle (STUDY/bundles/<task>/<digest>.npz), and all bundles
    of a task share one examples file (STUDY/examples/<task>.npz). STUDY/study.json lists the runs.
  run (the accelerator; numpy + JAX only): each unfinished run trains and evaluates from its
    bundle in its own process (`python -m meta_align_jax.lab.study STUDY RUN`), into
    STUDY/runs/<task>/<method>/k<shots>_n<noise%>/seed<seed>/ (eval_results.json,
    episode_accuracies*.npy, sweep_run.json, metrics.jsonl, checkpoints). Finished runs are skipped;
    a run cut by the time budget gets SIGTERM, saves a checkpoint and resumes on the next call.
    `slots` processes run at once, each pinned to one GPU (CUDA_VISIBLE_DEVICES).
  collect: copies the small result files of every run (no checkpoints) to another folder.

`meta_align_jax.lab.claim` turns STUDY/runs into docs/results/claim/<task>.json and plots.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import time
from typing import Callable

from meta_align_jax import io
from meta_align_jax.lab import sweep
from meta_align_jax.lab.spec import ERROR_FILE, LOG_FILE, RUN_FILE

STUDY_FILE = 'study.json'
COMPILE_CACHE = 'compile_cache'   # STUDY/compile_cache: the workers' shared compilation cache
RESULT_FILES = (io.RESULTS_FILE, RUN_FILE, 'metrics.jsonl', 'config.json', 'splits.json',
                'selection_history.json', 'early_stopped.json')


def bundle_key(config) -> str:
  """Runs with equal keys can share a bundle: same data fields, steps and tasks per step."""
  fields = io.bundle_fields(config)
  fields['train.num_steps'] = int(config.train.num_steps)
  fields['task.tasks_per_device'] = int(config.task.tasks_per_device)
  fields['eval.num_episodes'] = int(config.eval.num_episodes)
  fields['train.val_episodes'] = int(config.train.val_episodes)
  return hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:16]


def export_study(specs: list[sweep.RunSpec], study: str, *, grid: str = '',
                 log: Callable[[str], None] = print) -> dict:
  """Writes the configs, bundles and STUDY/study.json for `specs`. Existing bundles are kept, and
  so are the runs an earlier export listed (a study can take several grids)."""
  from meta_align_jax import parallel  # pylint: disable=g-import-not-at-top
  from meta_align_jax import validation  # pylint: disable=g-import-not-at-top
  from meta_align_jax.data import export  # pylint: disable=g-import-not-at-top
  runs = []
  for spec in specs:
    config = sweep.build_config(spec)
    validation.check_config(config)   # a bad run fails here, before any bundle is written
    key = bundle_key(config)
    bundle = os.path.join('bundles', spec.task, f'{key}.npz')
    config_path = os.path.join('configs', spec.relpath + '.json')
    os.makedirs(os.path.dirname(os.path.join(study, config_path)), exist_ok=True)
    io.write_atomic(os.path.join(study, config_path), config.to_json_best_effort(indent=1))
    if not os.path.exists(os.path.join(study, bundle)):
      t0 = time.time()
      os.makedirs(os.path.join(study, 'examples'), exist_ok=True)
      meta = export.export_bundle(
          config, os.path.join(study, bundle), steps=int(config.train.num_steps),
          examples_path=os.path.join(study, 'examples', f'{spec.task}.npz'),
          devices=parallel.num_batch_devices(config))
      log(f'bundle {bundle}: {meta["steps"]} steps, '
          f'{os.path.getsize(os.path.join(study, bundle)) / 2**20:.1f} MiB, '
          f'{time.time() - t0:.0f} s (first user: {spec.relpath})')
    runs.append({'relpath': spec.relpath, 'labels': spec.labels(), 'config': config_path,
                 'bundle': bundle})
  # A study can grow: runs exported before (another grid, other seeds) stay listed.
  path = os.path.join(study, STUDY_FILE)
  new = {r['relpath'] for r in runs}
  before = load_study(study) if os.path.exists(path) else {'grid': '', 'runs': []}
  runs = [r for r in before['runs'] if r['relpath'] not in new] + runs
  grids = [g for g in before.get('grid', '').split(',') if g and g != grid] + [grid]
  record = {'grid': ','.join(grids), 'runs': runs}
  io.write_atomic(os.path.join(study, STUDY_FILE), json.dumps(record, indent=1))
  log(f'{len(runs)} runs, {len({r["bundle"] for r in runs})} bundles in {study}.')
  return record


def load_study(study: str) -> dict:
  path = os.path.join(study, STUDY_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: export the study first '
                            f'(python launch/study.py export --grid ... --study {study}).')
  with open(path) as f:
    return json.load(f)


def run_dir(study: str, run: dict) -> str:
  return os.path.join(study, 'runs', run['relpath'])


def compile_order(runs: list[dict]) -> list[dict]:
  """`runs` reordered so that the first run of each (task, method, shots) comes before any
  second one: runs of one kind compile the same programs, so the later ones find them in the
  persistent compilation cache instead of compiling them at the same time. Stable otherwise."""
  seen: dict[tuple, int] = {}
  rank = []
  for r in runs:
    lab = r['labels']
    kind = (lab.get('task'), lab.get('method'), lab.get('shots'))
    rank.append(seen.get(kind, 0))
    seen[kind] = rank[-1] + 1
  return [r for _, _, r in sorted(zip(rank, range(len(runs)), runs), key=lambda t: t[:2])]


def run_one(study: str, relpath: str) -> dict:
  """Trains and evaluates one run of the study from its bundle (no TensorFlow)."""
  from meta_align_jax import train  # pylint: disable=g-import-not-at-top
  from meta_align_jax.feeds import exported  # pylint: disable=g-import-not-at-top
  run = next((r for r in load_study(study)['runs'] if r['relpath'] == relpath), None)
  if run is None:
    raise ValueError(f'{relpath} is not a run of {study}/{STUDY_FILE}.')
  import ml_collections  # pylint: disable=g-import-not-at-top
  with open(os.path.join(study, run['config'])) as f:
    config = ml_collections.ConfigDict(io.tuples_from_json(json.load(f)))
  workdir = run_dir(study, run)
  os.makedirs(workdir, exist_ok=True)
  io.write_atomic(os.path.join(workdir, RUN_FILE), json.dumps(run['labels'], indent=1))
  data = exported.ExportedData(os.path.join(study, run['bundle']))
  result = train.train_and_evaluate(config, workdir, data=data)   # train.select's checkpoint
  if not result.finished:
    raise SystemExit(f'{relpath}: stopped at step {result.step} (signal {result.stopped_by}); '
                     f'run the study again to resume.')
  return result.eval_results


def run_study(study: str, *, budget_s: float = 0, slots: int = 1, only: str = '',
              slots_per_gpu: int = 1, log: Callable[[str], None] = print,
              env: dict | None = None) -> dict[str, list]:
  """Runs the unfinished runs of `study` (`slots` at a time) within `budget_s` seconds (0: no
  limit). At the budget, running runs get SIGTERM (they checkpoint and exit) and none starts.
  Slot i runs on GPU i // slots_per_gpu: several small runs can share one GPU (their compiles,
  on the host, then overlap; give each a share of the GPU's memory with
  XLA_PYTHON_CLIENT_MEM_FRACTION)."""
  if slots_per_gpu < 1:
    raise ValueError(f'slots_per_gpu={slots_per_gpu}: use 1 or more.')
  t_start = time.time()
  runs = [r for r in load_study(study)['runs'] if only in r['relpath']]
  todo = compile_order([r for r in runs if not sweep.is_finished(run_dir(study, r))])
  status = {'skipped': [r['relpath'] for r in runs if r not in todo], 'done': [], 'failed': [],
            'stopped': [], 'not_started': []}
  log(f'{len(runs)} runs: {len(status["skipped"])} finished, {len(todo)} to run.')
  base_env = sweep.worker_env(env)
  # Runs that differ only in seed or label noise compile the same programs: a persistent
  # compilation cache shared by the worker processes compiles each once (compile_order puts one
  # run of each kind first). JAX_COMPILATION_CACHE_DIR set by the caller wins.
  base_env.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.abspath(os.path.join(study, COMPILE_CACHE)))
  running: dict[int, tuple] = {}   # slot -> (run, proc, t0, logf)
  stopping = False
  while todo or running:
    over = bool(budget_s) and time.time() - t_start >= budget_s
    if over and not stopping:
      stopping = True
      log(f'time budget {budget_s:.0f} s reached: stopping {len(running)} runs (they resume).')
      for _, proc, _, _ in running.values():
        proc.send_signal(signal.SIGTERM)
    for slot in range(max(1, slots)):
      if slot in running or not todo or stopping:
        continue
      run = todo.pop(0)
      workdir = run_dir(study, run)
      os.makedirs(workdir, exist_ok=True)
      proc_env = dict(base_env)
      if slots > 1:
        proc_env['CUDA_VISIBLE_DEVICES'] = str(slot // slots_per_gpu)
      proc, logf = sweep.start_worker('meta_align_jax.lab.study', [study, run['relpath']],
                                      workdir, proc_env)
      running[slot] = (run, proc, time.time(), logf)
      log(f'start {run["relpath"]} (slot {slot}, pid {proc.pid})')
    time.sleep(1)
    for slot, (run, proc, t0, logf) in list(running.items()):
      if proc.poll() is None:
        continue
      del running[slot]
      logf.close()
      sweep.end_worker(run['relpath'], run_dir(study, run), proc, t0, status, log,
                       stopping=stopping)
    if stopping and not running:
      break
  status['not_started'] = [r['relpath'] for r in todo]
  log(', '.join(f'{k}: {len(v)}' for k, v in status.items()))
  return status


def collect(study: str, dest: str) -> int:
  """Copies each run's result files (no checkpoints) to DEST/runs/...; returns the files copied."""
  n = 0
  for run in load_study(study)['runs']:
    src = run_dir(study, run)
    if not os.path.isdir(src):
      continue
    out = os.path.join(dest, 'runs', run['relpath'])
    for name in os.listdir(src):
      if name in RESULT_FILES or (name.startswith('episode_accuracies') and name.endswith('.npy')) \
          or name in (LOG_FILE, ERROR_FILE):
        os.makedirs(out, exist_ok=True)
        shutil.copy2(os.path.join(src, name), os.path.join(out, name))
        n += 1
  shutil.copy2(os.path.join(study, STUDY_FILE), os.path.join(dest, STUDY_FILE)) if n else None
  return n


if __name__ == '__main__':   # one run (run_study's worker): python -m meta_align_jax.lab.study STUDY RUN
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logging.use_absl_handler()
  if os.environ.get('STUDY_WITHOUT_TENSORFLOW'):   # prove the accelerator side needs no TF (tests)
    for _name in ('tensorflow', 'tensorflow_datasets', 'librosa'):
      sys.modules[_name] = None
  from meta_align_jax import checkpoint as _checkpoint  # pylint: disable=g-import-not-at-top
  _checkpoint.quiet_orbax_logs()
  run_one(sys.argv[1], sys.argv[2])
