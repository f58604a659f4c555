"""The training loop: `train(config, workdir)` and `train_and_evaluate(config, workdir)`.

A run lives in its work directory: config.json, Orbax checkpoints (`checkpoint.py`), TensorBoard
events and metrics.jsonl (train losses and the meta/alignment split, step time, steps/s,
periodic meta-validation by config.train.select, `selection.py`), and eval_results.json.

Resume is automatic: a run started on a workdir with checkpoints continues from the latest one.
The batch of step s is `make_train_iterator(config, start_step=s)`'s first and the step's key is
`fold_in(key(seed + 1), s)` inside the core step, so an interrupted and resumed run ends with the
parameters of an uninterrupted one. SIGTERM and SIGINT stop the loop at the next step boundary
with a checkpoint saved, skipping any meta-validation then due so that a preempted job saves
quickly (a second SIGINT interrupts at once).

Guard rails: the config and the data are checked before anything compiles; a non-finite loss or
gradient stops the run with FloatingPointError naming the step. One run at a time per workdir
(`workdir_lock`); a run refused by a check or stopped by the NaN guard before its first checkpoint
leaves the workdir's config.json as it was: the config is written (atomically) with the run's first
checkpoint. Resume skips (and moves aside, never deletes) a latest checkpoint that cannot be read,
saying why, and continues from the newest one that restores.

Metrics stay on the device until they are logged or a checkpoint is due; every step's metrics
are checked before a checkpoint is written, so a checkpoint never holds a state that went NaN.
metrics.jsonl and the TensorBoard events are flushed at every log step, so a running job can be
followed and a killed one keeps what it logged. Console: one progress line per log step (losses,
steps/s, ETA) and a one-line parameter summary (the full table goes to WORKDIR/parameters.txt).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import jax
import numpy as np
from absl import logging
from meta_align_jax import clu_compat  # before clu: its writers import TensorFlow  # noqa: I001
from clu import metric_writers, parameter_overview

from meta_align_jax import checkpoint as checkpoint_lib
from meta_align_jax import determinism
from meta_align_jax.fast import execution as execution_lib
from meta_align_jax import evaluate as evaluate_lib
from meta_align_jax import parallel, selection, validation, workdir_lock
from meta_align_jax import train_step as train_step_lib
from meta_align_jax.io import METRICS_FILE
from meta_align_jax.jsonl_writer import JsonlWriter
from meta_align_jax.stop_signals import StopOnSignal
from meta_align_jax.models import registry

PARAMETERS_FILE = 'parameters.txt'


@dataclasses.dataclass
class RunResult:
  """How a run ended: its last step, the signal that stopped it if any, the evaluation results."""
  step: int
  num_steps: int
  stopped_by: int | None = None   # signal number (SIGTERM, SIGINT) or None
  eval_results: dict | None = None
  early_stopped: bool = False     # stopped by config.train.patience (finished)

  @property
  def finished(self) -> bool:
    return self.stopped_by is None and (self.early_stopped or self.step >= self.num_steps)


# --------------------------------------------------------------------------- checks


def _nonnegative(config, name, minimum=0):
  value = config.train[name]
  if not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f'config.train.{name}={value!r}: must be an integer >= {minimum}.')


def check_loop_config(config) -> None:
  """The loop's own fields (the core's are `validation.check_config`'s); errors name the field."""
  if isinstance(config.train.num_steps, (int, np.integer)) and config.train.num_steps == 0:
    raise ValueError('config.train.num_steps=0: nothing to train. Set it to the number of steps '
                     'to train (or --mode eval to evaluate a trained workdir).')
  _nonnegative(config, 'num_steps', 1)
  _nonnegative(config, 'log_every', 1)
  _nonnegative(config, 'checkpoint_every')
  _nonnegative(config, 'eval_every')
  _nonnegative(config, 'keep_checkpoints', 1)
  if config.train.eval_every:
    _nonnegative(config, 'val_episodes', 1)
  if config.eval.split not in ('train', 'val', 'test'):
    raise ValueError(f"config.eval.split={config.eval.split!r}: use 'val' or 'test' (or 'train').")
  if not isinstance(config.seed, (int, np.integer)):
    raise ValueError(f'config.seed={config.seed!r}: must be an integer.')
  for name in ('data_dir', 'manual_dir'):
    check_dir_field(f'config.data.{name}', config.data.get(name, ''))
  determinism.check_execution_env(config)


def check_dir_field(field: str, value) -> None:
  """A directory field: '' (the default) or a path; a relative one must exist (so that a typo such
  as `data_dir=5` does not start a dataset build in ./5); an absolute one is created if needed."""
  if not isinstance(value, str):
    raise ValueError(f'{field}={value!r}: must be a directory path (a string), or \'\' for the '
                     'default.')
  path = os.path.expanduser(value)
  if value and os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f'{field}={value!r} is a file, not a directory.')
  if value and not os.path.isabs(path) and not os.path.isdir(path):
    raise ValueError(f'{field}={value!r}: no directory {os.path.abspath(path)}. Give an absolute '
                     "path (created if needed), an existing directory, or '' for the default.")


def check_splits(config, splits: dict) -> None:
  """N-way tasks need N classes in the split they are drawn from (and among labelled targets)."""
  needs = [('train', config.task.ways, 'config.task.ways'),
           (config.eval.split, config.eval.ways, 'config.eval.ways')]
  if config.align.enabled and config.align.classes == 'train':
    needs.append(('train', config.align.ways, 'config.align.ways'))
  if config.train.eval_every:
    needs.append(('val', config.eval.ways, 'config.eval.ways'))
  for split, ways, field in needs:
    have = len(splits.get(split, ()))
    if have < ways:
      raise ValueError(f'{field}={ways} is larger than the {have} classes of split {split!r} '
                       f'(config.data.split_fractions={tuple(config.data.split_fractions)}); '
                       'lower it or move classes into that split.')
  # config.data.target_train_classes against the meta-train classes.
  validation.check_target_train_classes(config, len(splits.get('train', ())))


# --------------------------------------------------------------------------- metrics


class MetricWindow:
  """Step metrics kept on the device until needed; checked for NaN/Inf when fetched."""

  def __init__(self):
    self._device: list[tuple[int, dict]] = []
    self._host: list[tuple[int, dict]] = []
    self._t0 = time.monotonic()

  def add(self, step: int, metrics: dict) -> None:
    self._device.append((step, metrics))

  def fetch(self) -> None:
    """Copies pending metrics to the host (one sync) and raises at the first non-finite step."""
    if not self._device:
      return
    host = jax.device_get([m for _, m in self._device])
    for (step, _), m in zip(self._device, host):
      bad = {k: float(v) for k, v in m.items() if not np.isfinite(v)}
      if bad:
        raise FloatingPointError(
            f'Non-finite training metrics at step {step}: '
            + ', '.join(f'{k}={v}' for k, v in sorted(bad.items()))
            + '. Training stopped; no checkpoint was written after the last finite step. Lower '
            'config.optim.lr, set config.optim.clip_norm, or check the data.')
      self._host.append((step, m))
    self._device = []

  def summary(self) -> dict[str, float]:
    """Means over the window, `train/` prefixed, plus the wall time per step; starts a new one."""
    self.fetch()
    elapsed = time.monotonic() - self._t0
    out = {}
    if self._host:
      for k in self._host[0][1]:
        out[f'train/{k}'] = float(np.mean([m[k] for _, m in self._host]))
      out['train/step_time'] = elapsed / len(self._host)
    self._host, self._t0 = [], time.monotonic()
    return out


def make_writer(workdir: str, *, resume_step: int) -> metric_writers.MetricWriter:
  """TensorBoard events + metrics.jsonl (process 0 only; the console gets `Progress` lines)."""
  writers = []
  if jax.process_index() == 0:
    if clu_compat.HAVE_TENSORFLOW:
      from meta_align_jax.data import tfsetup  # pylint: disable=g-import-not-at-top
      tfsetup.configure()   # clu's TensorBoard writer runs TensorFlow: keep it off the accelerators
      from clu.metric_writers import summary_writer  # pylint: disable=g-import-not-at-top
      writers.append(summary_writer.SummaryWriter(workdir))
    else:   # e.g. a GPU machine training from an exported bundle
      logging.info('TensorFlow is not installed: no TensorBoard events; metrics go to %s.',
                   METRICS_FILE)
    writers.append(JsonlWriter(os.path.join(workdir, METRICS_FILE), resume_step=resume_step))
  return metric_writers.MultiWriter(writers)


# --------------------------------------------------------------------------- the loop


def _initial_state(manager, config, model, workdir):
  """The state to start from (the newest readable checkpoint, else a fresh init) and the manager
  (a new one when unreadable steps were moved aside)."""
  if checkpoint_lib.complete_steps(manager):
    state, skipped = checkpoint_lib.restore_newest_readable(
        manager, config, model, set_aside=os.path.join(workdir, checkpoint_lib.UNREADABLE_DIR))
    if skipped:
      manager.close()
      manager = checkpoint_lib.make_manager(workdir, config)
    logging.info('Resuming from the checkpoint of step %d in %s.', int(state.step),
                 manager.directory)
    return state, manager
  return jax.device_get(
      train_step_lib.init_train_state(config, model, jax.random.key(config.seed))), manager


def _parameter_summary(params) -> str:
  groups = {k: sum(int(np.size(x)) for x in jax.tree.leaves(v)) for k, v in params.items()}
  total = sum(groups.values())
  parts = ', '.join(f'{k} {n:,}' for k, n in groups.items())
  return f'Parameters: {total:,} ({parts})'


def _log_setup(config, model, params, workdir) -> None:
  ex = execution_lib.of(config, model)
  logging.info('Process %d of %d; local devices: %s; parallel: %s; task batching, inner loop: %s',
               jax.process_index(), jax.process_count(), jax.local_devices(),
               ex.parallel, (ex.task_batching, ex.inner_loop))
  path = os.path.join(workdir, PARAMETERS_FILE)
  if jax.process_index() == 0:
    checkpoint_lib.write_atomic(path, parameter_overview.get_parameter_overview(params) + '\n')
  logging.info('%s; the full table is in %s.', _parameter_summary(params), path)


def _due(step: int, every: int, last: bool) -> bool:
  return last or bool(every and step % every == 0)


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class Progress:
  """One console line per log step: losses, steps/s over the window and the ETA."""

  def __init__(self, num_steps: int):
    self.num_steps = num_steps

  def __call__(self, step: int, scalars: dict) -> None:
    step_time = scalars.get('train/step_time')
    speed = eta = ''
    if step_time:
      speed = f' | {1.0 / step_time:.2f} steps/s'
      eta = f', ETA {_duration((self.num_steps - step) * step_time)}'
    losses = ', '.join(f'{k[len("train/"):]} {v:.4f}' for k, v in scalars.items()
                       if k.startswith('train/') and k.endswith('loss'))
    logging.info('Step %d/%d (%d%%): %s%s%s', step, self.num_steps,
                 100 * step // self.num_steps, losses, speed, eta)


def prepare(config, workdir: str, data):
  """Checks the config, the workdir's saved config and the data splits; builds the model.

  Everything here runs before anything compiles, so a bad config fails in seconds.
  """
  validation.check_config(config)
  check_loop_config(config)
  model = registry.build_model(config)
  os.makedirs(workdir, exist_ok=True)
  checkpoint_lib.check_compatible(workdir, config)
  if hasattr(data, 'make_splits'):
    check_splits(config, data.make_splits(config, workdir=workdir))
  return model


def _lock(workdir: str):
  return workdir_lock.hold(workdir, primary=jax.process_index() == 0)


def train(config, workdir: str, *, data=None) -> RunResult:
  """Trains (or resumes) `config` in `workdir` up to `config.train.num_steps`.

  Args:
    config: an experiment config (see configs/default.py).
    workdir: the run's directory; created if needed, resumed from if it holds checkpoints.
    data: the data pipeline (see `evaluate.data_api`); tests and research code inject their own.

  Returns:
    A `RunResult`; `stopped_by` is set when SIGTERM/SIGINT stopped the run (after a checkpoint).

  Raises:
    ValueError: an invalid config (naming the field) or a workdir trained with an incompatible one.
    FloatingPointError: the loss or gradient went NaN/Inf (naming the step).
    workdir_lock.WorkdirLockedError: another run is training in `workdir`.
  """
  data = evaluate_lib.data_api(data)
  check_loop_config(config)   # cheap checks before taking the lock
  with _lock(workdir):
    return _train(config, workdir, prepare(config, workdir, data), data, jit_cache={})


def _train(config, workdir, model, data, *, jit_cache: dict) -> RunResult:
  val = selection.make_selector(config, model, data, workdir=workdir, jit_cache=jit_cache)
  manager = checkpoint_lib.make_manager(workdir, config)
  state, manager = _initial_state(manager, config, model, workdir)
  start = int(state.step)
  stopped_at = selection.early_stopped(workdir)
  if stopped_at is not None:   # stopped on patience earlier: finished
    checkpoint_lib.close_manager(manager)
    logging.info('Stopped on config.train.patience at step %d earlier; finished.', stopped_at)
    return RunResult(step=stopped_at, num_steps=int(config.train.num_steps), early_stopped=True)
  history = selection.History(workdir, start)
  train_iter = data.make_train_iterator(config, start_step=start, workdir=workdir)
  _log_setup(config, model, state.params, workdir)
  writer = make_writer(workdir, resume_step=start)
  # config.json describes the workdir's checkpoints: it is replaced only when this run saves one.
  write_config = lambda: checkpoint_lib.write_config(workdir, config)
  try:
    return _loop(config, model, state, train_iter, manager, writer, val, write_config, history)
  finally:
    checkpoint_lib.close_manager(manager)
    writer.flush()
    writer.close()


def _loop(config, model, state, train_iter, manager, writer, val, write_config,
          history=None) -> RunResult:
  t = config.train
  num_steps, start = int(t.num_steps), int(state.step)
  step_fn = train_step_lib.make_train_step(config, model)
  pmapped = execution_lib.of(config, model).pmapped
  state = parallel.replicate(state) if pmapped else jax.device_put(state)
  unreplicated = parallel.unreplicate if pmapped else (lambda x: x)
  rng = jax.random.key(config.seed + 1)   # folded with the step (and device) in the core step
  window = MetricWindow()
  # Progress is reported right after the metrics are fetched at log steps: before that the loop
  # only dispatches work, so timing it would measure dispatch, not training.
  progress = Progress(num_steps)
  if start >= num_steps:
    logging.info('Already trained to step %d of %d.', start, num_steps)
  step = start
  config_written = False
  with StopOnSignal() as stop:
    for step in range(start + 1, num_steps + 1):
      state, metrics = step_fn(state, next(train_iter), rng)
      window.add(step, metrics)
      stopping = stop.signum is not None
      last = step == num_steps or stopping
      if _due(step, t.log_every, last):
        scalars = window.summary()
        if scalars.get('train/step_time'):
          scalars['train/steps_per_sec'] = 1.0 / scalars['train/step_time']
        writer.write_scalars(step, scalars)
        writer.flush()   # a running job can be followed; a killed one keeps what it logged
        progress(step, scalars)
      # A stop request skips meta-validation: preemption grace periods are short.
      validate = val is not None and not stopping and _due(step, t.eval_every, step == num_steps)
      if validate or _due(step, t.checkpoint_every, last):
        window.fetch()   # never checkpoint a state that went non-finite
        host = unreplicated(state)
        metrics = {}
        if validate:
          scores = val(host.params)
          writer.write_scalars(step, evaluate_lib.flat_scalars(scores, 'val'))
          writer.flush()
          logging.info('Step %d: selection (%s) %s', step, selection.select_mode(config),
                       selection.describe(scores))
          metrics = {checkpoint_lib.VAL_METRIC: scores['selection_score']}
          if history is not None:
            history.add(step, scores['selection_score'])
        if not config_written:
          write_config()
          config_written = True
        checkpoint_lib.save(manager, host, metrics=metrics)
        if validate and history is not None and history.should_stop(t.get('patience', 0)):
          history.mark_stopped(step)
          logging.info('Step %d: no better selection score in %d validations '
                       '(config.train.patience); stopping.', step, t.patience)
          return RunResult(step=step, num_steps=num_steps, early_stopped=True)
      if stopping:   # (a signal that came later in this iteration stops the next one)
        logging.warning('Stopped by %s at step %d; checkpoint saved in %s.',
                        signal.Signals(stop.signum).name, step, manager.directory)
        return RunResult(step=step, num_steps=num_steps, stopped_by=stop.signum)
  return RunResult(step=max(step, start), num_steps=num_steps)


def train_and_evaluate(config, workdir: str, *, data=None, checkpoint='best') -> RunResult:
  """Trains (resuming if possible), then evaluates `checkpoint` on `config.eval.split`.

  The evaluation data is loaded before training so that an invalid evaluation config fails
  before hours of training. The result's `eval_results` (also in WORKDIR/eval_results.json) is
  None when a signal stopped training (a checkpoint was saved; run again to resume).
  """
  data = evaluate_lib.data_api(data)
  check_loop_config(config)   # cheap checks before taking the lock
  with _lock(workdir):
    model = prepare(config, workdir, data)
    jit_cache = {}   # meta-val and meta-test evaluation share their compiled functions
    evaluators = evaluate_lib.make_evaluators(config, model, data, split=config.eval.split,
                                              workdir=workdir, jit_cache=jit_cache)
    result = _train(config, workdir, model, data, jit_cache=jit_cache)
    if result.finished:
      if checkpoint == 'best':   # select='final': the last step, a fixed step count
        checkpoint = selection.checkpoint_to_evaluate(config)
      result.eval_results = evaluate_lib.evaluate(config, workdir, checkpoint=checkpoint,
                                                  data=data, evaluators=evaluators)
  return result
