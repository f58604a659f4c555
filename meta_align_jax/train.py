"""The training loop: `train(config, workdir)` and `train_and_evaluate(config, workdir)`.

A run lives in its work directory: config.json, Orbax checkpoints (`checkpoint.py`), TensorBoard
events and metrics.jsonl (train losses and the meta/alignment split, step time, steps/s,
periodic meta-validation accuracy), and after evaluation eval_results.json (`evaluate.py`).

Resume is automatic: a run started on a workdir with checkpoints continues from the latest one.
The batch of step s is `make_train_iterator(config, start_step=s)`'s first and the step's key is
`fold_in(key(seed + 1), s)` inside the core step, so an interrupted and resumed run ends with the
parameters of an uninterrupted one. SIGTERM and SIGINT stop the loop at the next step boundary
with a checkpoint saved, skipping any meta-validation then due so that a preempted job saves
quickly (a second SIGINT interrupts at once).

Guard rails: the config and the data are checked before anything compiles; a non-finite loss or
gradient stops the run with FloatingPointError naming the step. Metrics stay on the device until
they are logged (every `config.train.log_every` steps) or a checkpoint is due, so the loop does
not wait on the device every step; every step's metrics are checked before a checkpoint is
written, so a checkpoint never holds a state that went non-finite.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import jax
import numpy as np
from absl import logging
from meta_align_jax import clu_compat  # before clu: its writers import TensorFlow  # noqa: I001
from clu import metric_writers, parameter_overview, periodic_actions

from meta_align_jax import checkpoint as checkpoint_lib
from meta_align_jax import evaluate as evaluate_lib
from meta_align_jax import parallel, validation
from meta_align_jax import train_step as train_step_lib
from meta_align_jax.io import METRICS_FILE
from meta_align_jax.jsonl_writer import JsonlWriter
from meta_align_jax.models import registry


@dataclasses.dataclass
class RunResult:
  """How a run ended: its last step, the signal that stopped it if any, the evaluation results."""
  step: int
  num_steps: int
  stopped_by: int | None = None   # signal number (SIGTERM, SIGINT) or None
  eval_results: dict | None = None

  @property
  def finished(self) -> bool:
    return self.stopped_by is None and self.step >= self.num_steps


# --------------------------------------------------------------------------- checks


def _nonnegative(config, name, minimum=0):
  value = config.train[name]
  if not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f'config.train.{name}={value!r}: must be an integer >= {minimum}.')


def check_loop_config(config) -> None:
  """The loop's own fields (the core's are `validation.check_config`'s); errors name the field."""
  _nonnegative(config, 'num_steps')
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


# --------------------------------------------------------------------------- signals


class StopOnSignal:
  """Turns SIGTERM/SIGINT into a request the loop honours at the next step boundary.

  A second SIGINT raises KeyboardInterrupt at once. Handlers are installed only in the main
  thread (Python allows no other) and the previous ones are put back on exit.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    logging.warning('Received %s: saving a checkpoint after this step, then stopping.',
                    signal.Signals(signum).name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    return False


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
  """Logging + TensorBoard (clu's default writer) + metrics.jsonl; only process 0 writes files."""
  primary = jax.process_index() == 0
  if clu_compat.HAVE_TENSORFLOW:
    from meta_align_jax.data import tfsetup  # pylint: disable=g-import-not-at-top
    tfsetup.configure()   # clu's TensorBoard writer runs TensorFlow: keep it off the accelerators
    writers = [metric_writers.create_default_writer(workdir, just_logging=not primary)]
  else:   # e.g. a GPU machine training from an exported bundle
    logging.warning('TensorFlow is not installed: no TensorBoard events; metrics go to the log '
                    'and to %s.', METRICS_FILE)
    writers = [metric_writers.LoggingWriter()]
  if primary:
    writers.append(JsonlWriter(os.path.join(workdir, METRICS_FILE), resume_step=resume_step))
  return metric_writers.MultiWriter(writers)


# --------------------------------------------------------------------------- the loop


def _initial_state(manager, config, model) -> train_step_lib.TrainState:
  if manager.latest_step() is not None:
    state = checkpoint_lib.restore_state(manager, config, model, 'latest')
    logging.info('Resuming from the checkpoint of step %d in %s.', int(state.step),
                 manager.directory)
    return state
  return jax.device_get(
      train_step_lib.init_train_state(config, model, jax.random.key(config.seed)))


def _log_setup(config, params) -> None:
  logging.info('Process %d of %d; devices: %s', jax.process_index(), jax.process_count(),
               jax.devices())
  logging.info('Local devices: %s; parallel: %s; task batching, inner loop: %s',
               jax.local_devices(), parallel.resolve_parallel(config),
               parallel.resolve_execution(config))
  parameter_overview.log_parameter_overview(params, msg='Parameters')


def _due(step: int, every: int, last: bool) -> bool:
  return last or bool(every and step % every == 0)


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
  """
  data = evaluate_lib.data_api(data)
  return _train(config, workdir, prepare(config, workdir, data), data, jit_cache={})


def _train(config, workdir, model, data, *, jit_cache: dict) -> RunResult:
  val = None
  if config.train.eval_every:
    val = evaluate_lib.FewShotEvaluator(config, model, data, split='val', workdir=workdir,
                                        num_episodes=config.train.val_episodes,
                                        jit_cache=jit_cache)
  manager = checkpoint_lib.make_manager(workdir, config)
  state = _initial_state(manager, config, model)
  start = int(state.step)
  checkpoint_lib.write_config(workdir, config)
  train_iter = data.make_train_iterator(config, start_step=start, workdir=workdir)
  _log_setup(config, state.params)
  writer = make_writer(workdir, resume_step=start)
  try:
    return _loop(config, model, state, train_iter, manager, writer, val)
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.flush()
    writer.close()


def _loop(config, model, state, train_iter, manager, writer, val) -> RunResult:
  t = config.train
  num_steps, start = int(t.num_steps), int(state.step)
  step_fn = train_step_lib.make_train_step(config, model)
  pmapped = parallel.resolve_parallel(config) == 'pmap'
  state = train_step_lib.replicate(state) if pmapped else jax.device_put(state)
  unreplicated = train_step_lib.unreplicate if pmapped else (lambda x: x)
  rng = jax.random.key(config.seed + 1)   # folded with the step (and device) in the core step
  window = MetricWindow()
  # Progress is reported right after the metrics are fetched at log steps: before that the loop
  # only dispatches work, so timing it would measure dispatch, not training.
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer,
                                           every_secs=None, every_steps=t.log_every)
  if start >= num_steps:
    logging.info('Already trained to step %d of %d.', start, num_steps)
  step = start
  with StopOnSignal() as stop:
    for step in range(start + 1, num_steps + 1):
      state, metrics = step_fn(state, next(train_iter), rng)
      window.add(step, metrics)
      stopping = stop.signum is not None
      last = step == num_steps or stopping
      if _due(step, t.log_every, last):
        writer.write_scalars(step, window.summary())
      report(step)
      # A stop request skips meta-validation: preemption grace periods are short.
      validate = val is not None and not stopping and _due(step, t.eval_every, step == num_steps)
      if validate or _due(step, t.checkpoint_every, last):
        window.fetch()   # never checkpoint a state that went non-finite
        host = unreplicated(state)
        metrics = {}
        if validate:
          with report.timed('meta-val', wait_jax_async_dispatch=False):
            scores = val(host.params)
          writer.write_scalars(step, evaluate_lib.flat_scalars(scores, 'val'))
          logging.info('Step %d: meta-val accuracy %.4f +/- %.4f', step,
                       scores['accuracy_mean'], scores['accuracy_ci95'])
          metrics = {checkpoint_lib.VAL_METRIC: scores['accuracy_mean']}
        with report.timed('checkpoint', wait_jax_async_dispatch=False):
          checkpoint_lib.save(manager, host, metrics=metrics)
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
  model = prepare(config, workdir, data)
  jit_cache = {}   # meta-val and meta-test evaluation share their compiled functions
  evaluators = evaluate_lib.make_evaluators(config, model, data, split=config.eval.split,
                                            workdir=workdir, jit_cache=jit_cache)
  result = _train(config, workdir, model, data, jit_cache=jit_cache)
  if result.finished:
    result.eval_results = evaluate_lib.evaluate(config, workdir, checkpoint=checkpoint, data=data,
                                                evaluators=evaluators)
  return result
