"""Checkpoints of a run's work directory: the config used, Orbax train states, and `restore`.

A work directory holds `config.json` (the config of the latest run in it) and `checkpoints/`, an
Orbax `CheckpointManager` directory keeping the latest `config.train.keep_checkpoints` steps plus
the one with the best meta-validation accuracy (`val_accuracy`, never meta-test). Each step stores
the unreplicated train state as host arrays and a small JSON item with the shapes of every leaf,
so a checkpoint that does not fit the model is refused with the leaves (and config fields) at
fault, before Orbax reads any array.

Orbax writes a step into a temporary directory and renames it when complete, so a process killed
at any moment (even by SIGKILL) leaves only complete steps; leftover temporary directories are
ignored and cleaned up by the next manager. Old steps are deleted the same way in reverse (renamed
away, then removed: `checkpoint_files.py`), so a kill during the cleanup of old steps never
leaves half a step among the saved ones.

A step that cannot be read (a truncated file, a disk error) is never deleted: training resumes
from the newest step that restores, logs which step it skipped and why, and moves the unreadable
one to WORKDIR/unreadable_checkpoints/ (`UNREADABLE_DIR`) so that it stays for inspection without
being listed again. Restoring an explicitly named unreadable step raises
`UnreadableCheckpointError` naming the step, the cause and the steps that remain.
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from meta_align_jax import checkpoint_files
from meta_align_jax import train_step as train_step_lib
from meta_align_jax.io import CONFIG_FILE, config_field, write_atomic  # noqa: F401  (re-exported)
from meta_align_jax.io import tuples_from_json as _tuples
from meta_align_jax.models import registry

CHECKPOINT_DIR = 'checkpoints'
VAL_METRIC = 'val_accuracy'
DELETING_DIR = checkpoint_files.DELETING_DIR   # under checkpoints/: steps Orbax renamed away
UNREADABLE_DIR = 'unreadable_checkpoints'    # under the workdir: steps that failed to restore
ITEMS = checkpoint_files.ITEMS

# Config fields that decide the shapes or dtypes of the train state: a workdir's checkpoints only
# fit a config that agrees with the saved one on all of them.
SHAPE_FIELDS = (
    'source.modality', 'source.encoder', 'source.input_shape',
    'target.modality', 'target.encoder', 'target.input_shape',
    'model.width', 'model.hidden', 'model.z_dim', 'model.norm', 'model.vocab_size',
    'model.text_layers', 'model.num_global_classes', 'model.shared_encoder', 'task.ways',
    'eval.ways', 'optim.name',
)


# Fields whose being zero or not changes the optimiser state's structure (a clipping or schedule
# transformation is chained in or not), compared as booleans.
STRUCTURE_FIELDS = ('optim.clip_norm', 'optim.warmup_steps')

# Fields added after workdirs were written: a saved config without one had its default.
FIELD_DEFAULTS = {'model.shared_encoder': False}


complete_steps = checkpoint_files.complete_steps
close_manager = checkpoint_files.close_manager


class IncompatibleCheckpointError(ValueError):
  """A workdir's config or checkpoint does not fit the config or model at hand."""


class UnreadableCheckpointError(RuntimeError):
  """A saved step exists but cannot be read (truncated or corrupt files)."""


# --------------------------------------------------------------------------- config.json


def write_config(workdir: str, config) -> None:
  """Saves `config` as WORKDIR/config.json (process 0 only; atomic)."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  write_atomic(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2) + '\n')


def load_config(workdir: str) -> ml_collections.ConfigDict | None:
  """The config saved in `workdir`, or None when there is none."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)))


def _norm(value):
  return tuple(value) if isinstance(value, (list, tuple)) else value


def config_differences(saved, config, fields=None) -> list[tuple[str, Any, Any]]:
  """(field, saved value, current value) for each differing field (all leaves when fields=None)."""
  if fields is None:
    flat = lambda c: {k: v for k, v in _flatten(c.to_dict())}
    a, b = flat(saved), flat(config)
    fields = sorted(set(a) | set(b))
  out = []
  def value(c, name):
    v = config_field(c, name)
    return _norm(FIELD_DEFAULTS.get(name) if v is None else v)

  for name in fields:
    old, new = value(saved, name), value(config, name)
    if old != new:
      out.append((name, old, new))
  return out


def _flatten(d: dict, prefix: str = ''):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _flatten(v, f'{prefix}{k}.')
    else:
      yield f'{prefix}{k}', v


def _describe(diffs) -> str:
  return '; '.join(f'config.{n} is {new!r} but the workdir was trained with {old!r}'
                   for n, old, new in diffs)


def check_compatible(workdir: str, config) -> None:
  """Refuses `config` for `workdir` when their saved config differs in a field that changes shapes.

  Differences in other fields (steps, learning rate, evaluation settings) are allowed and logged.
  """
  saved = load_config(workdir)
  if saved is None:
    return
  shape_diffs = config_differences(saved, config, SHAPE_FIELDS)
  for name in STRUCTURE_FIELDS:
    old, new = config_field(saved, name), config_field(config, name)
    if old is not None and new is not None and bool(old) != bool(new):
      shape_diffs.append((name, old, new))
  if shape_diffs:
    raise IncompatibleCheckpointError(
        f'{workdir} holds a run whose config is incompatible with this one: '
        f'{_describe(shape_diffs)}. Use a fresh --workdir, or the saved config '
        f'({os.path.join(workdir, CONFIG_FILE)}).')
  other = config_differences(saved, config)
  # Longer training or other evaluation settings are routine; other changes deserve a warning.
  routine = [d for d in other if d[0].startswith(('train.', 'eval.'))]
  unusual = [d for d in other if d not in routine]
  if routine:
    logging.info('Config differs from the one saved in %s: %s', workdir, _describe(routine))
  if unusual:
    logging.warning('Config differs from the one saved in %s (allowed, no shape change): %s',
                    workdir, _describe(unusual))


# --------------------------------------------------------------------------- the manager


def _val_metric(metrics) -> float:
  return float((metrics or {}).get(VAL_METRIC, -np.inf))


def make_manager(workdir: str, config=None, *, read_only: bool = False) -> ocp.CheckpointManager:
  """CheckpointManager over WORKDIR/checkpoints: latest `config.train.keep_checkpoints` + best val.

  A checkpoint saved with `metrics={VAL_METRIC: accuracy}` competes for 'best'; one saved without
  is kept only while it is among the latest. With no validated checkpoint, best = latest. A
  writable manager first finishes any deletion a killed run left half done.
  """
  keep = int(config.train.keep_checkpoints) if config is not None else 1
  directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  if not read_only:
    checkpoint_files.finish_deletions(directory)
  policies = ocp.checkpoint_managers
  options = ocp.CheckpointManagerOptions(
      best_fn=_val_metric, best_mode='max',
      preservation_policy=policies.AnyPreservationPolicy([
          policies.LatestN(n=keep),
          policies.BestN(get_metric_fn=_val_metric, n=1, keep_checkpoints_without_metrics=False),
      ]),
      cleanup_tmp_directories=not read_only, read_only=read_only, create=not read_only,
      save_interval_steps=0 if read_only else 1,
      todelete_subdir=None if read_only else DELETING_DIR)
  return ocp.CheckpointManager(directory, options=options, item_names=ITEMS)


def leaf_shapes(tree) -> dict[str, list[int]]:
  """{'params/source/...': shape} for every array leaf of `tree` (arrays or ShapeDtypeStructs)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {_path(p): [int(d) for d in np.shape(x)] for p, x in flat}


def _path(keypath) -> str:
  parts = []
  for k in keypath:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return '/'.join(parts)


def save(manager: ocp.CheckpointManager, state, *, metrics: dict | None = None) -> None:
  """Saves an unreplicated train state at its step (asynchronously; all processes call this).

  `metrics` must not be None for a checkpoint that competes for 'best' ({VAL_METRIC: accuracy});
  others are saved with an empty metrics dict.
  """
  state = jax.device_get(state)
  step = int(state.step)
  if step in manager.all_steps():
    return   # e.g. the end of a run that stopped exactly on a checkpoint step
  # Steps deleted by the previous save were renamed into DELETING_DIR (atomic); remove them now
  # that no save is in flight. A kill during this rmtree leaves nothing among the saved steps.
  manager.wait_until_finished()
  checkpoint_files.purge_deleted(str(manager.directory))
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), shapes=ocp.args.JsonSave(leaf_shapes(state))),
      metrics=dict(metrics or {}), force=True)


def resolve_step(manager: ocp.CheckpointManager, step=None) -> int:
  """Turns None/'latest', 'best' or an int (or digit string) into a saved step; errors list them."""
  steps = checkpoint_files.complete_steps(manager)
  where = manager.directory
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {where}: train first (--mode train).')
  if step is None or step == 'latest':
    return steps[-1]
  if step == 'best':
    best = manager.best_step()
    if best is None or best not in steps or VAL_METRIC not in (manager.metrics(best) or {}):
      logging.warning('No checkpoint in %s has a meta-validation accuracy; using the latest.',
                      where)
      return steps[-1]
    return best
  if isinstance(step, str) and not step.isdigit():
    raise ValueError(f'checkpoint step {step!r}: use latest, best or a step number.')
  if int(step) not in steps:
    raise FileNotFoundError(f'No checkpoint for step {int(step)} in {where}; saved steps: {steps}.')
  return int(step)


def abstract_state(config, model) -> train_step_lib.TrainState:
  """Shapes and dtypes of the train state for `config` (nothing is computed)."""
  return jax.eval_shape(
      lambda: train_step_lib.init_train_state(config, model, jax.random.key(config.seed)))


def _check_shapes(saved: dict, expected: dict, step: int, where: str) -> None:
  order = lambda k: (not k.startswith('params/'), k)   # parameters first: they name the cause
  missing = sorted(set(expected) - set(saved), key=order)
  extra = sorted(set(saved) - set(expected), key=order)
  wrong = [(k, saved[k], expected[k]) for k in sorted(set(saved) & set(expected), key=order)
           if list(saved[k]) != list(expected[k])]
  if not (missing or extra or wrong):
    return
  lines = [f'{k}: checkpoint {tuple(a)}, model {tuple(b)}' for k, a, b in wrong]
  lines += [f'{k}: in the model, not in the checkpoint' for k in missing]
  lines += [f'{k}: in the checkpoint, not in the model' for k in extra]
  shown = f' (first {_SHOW} shown)' if len(lines) > _SHOW else ''
  hint = ''
  if not any(k.startswith('params/') for k in missing + extra + [w[0] for w in wrong]):
    hint = (' Only the optimiser state differs: check config.optim.name and whether '
            'config.optim.clip_norm or config.optim.warmup_steps were zero when it was saved.')
  raise IncompatibleCheckpointError(
      f'Checkpoint step {step} in {where} does not fit the model built from the config; '
      f'{len(lines)} leaves differ{shown}.{hint}\n  ' + '\n  '.join(lines[:_SHOW]))


_SHOW = 6


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f'{type(e).__name__}: {text[0][:300] if text else ""}'


def restore_state(manager: ocp.CheckpointManager, config, model, step=None
                  ) -> train_step_lib.TrainState:
  """The train state saved at `step` (see `resolve_step`), as host numpy arrays.

  Raises:
    IncompatibleCheckpointError: the checkpoint does not fit the model (naming leaves, fields).
    UnreadableCheckpointError: the step's files cannot be read (naming the step and the cause).
  """
  step = resolve_step(manager, step)
  target = abstract_state(config, model)
  checkpoint_files.ignore_closed_event_loop_errors()
  try:
    saved = manager.restore(step, args=ocp.args.Composite(shapes=ocp.args.JsonRestore())).shapes
    if not isinstance(saved, dict):
      raise ValueError(f'the shapes item holds {type(saved).__name__}, not a dict')
  except Exception as e:  # pylint: disable=broad-except  (Orbax/TensorStore raise many types)
    raise _unreadable(manager, step, e) from None
  _check_shapes(saved, leaf_shapes(target), step, str(manager.directory))
  try:
    return manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target))).state
  except Exception as e:  # pylint: disable=broad-except
    raise _unreadable(manager, step, e) from None


def _unreadable(manager, step: int, e: BaseException) -> UnreadableCheckpointError:
  others = [s for s in checkpoint_files.complete_steps(manager) if s != step]
  return UnreadableCheckpointError(
      f'Checkpoint step {step} in {manager.directory} cannot be read ({_first_line(e)}). Other '
      f'saved steps: {others or "none"}'
      + ('; evaluate one of them (--eval_checkpoint N).' if others else '.'))


def restore_newest_readable(manager: ocp.CheckpointManager, config, model, *,
                            set_aside: str | None = None):
  """The state of the newest step that restores, and [(step, reason)] of the newer ones skipped.

  Each skipped step is logged with its reason and, when `set_aside` (a directory) is given, moved
  there (never deleted) so that the manager no longer lists it. Incompatible checkpoints raise.
  """
  skipped = []
  for step in reversed(checkpoint_files.complete_steps(manager)):
    try:
      state = restore_state(manager, config, model, step)
    except UnreadableCheckpointError as e:
      reason = str(e)
      skipped.append((step, reason))
      if set_aside is not None and jax.process_index() == 0:
        os.makedirs(set_aside, exist_ok=True)
        dest = os.path.join(set_aside, f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
        os.replace(os.path.join(str(manager.directory), str(step)), dest)
        reason += f' Moved to {dest} (not deleted).'
      logging.warning('Skipping checkpoint step %d: %s', step, reason)
      continue
    return state, skipped
  if skipped:
    raise UnreadableCheckpointError(
        f'No checkpoint in {manager.directory} can be read: '
        + ' | '.join(r for _, r in skipped))
  raise FileNotFoundError(f'No checkpoint in {manager.directory}: train first (--mode train).')


def restore(workdir: str, step=None):
  """Restores a run for evaluation or research code: `(config, model, state)`.

  Args:
    workdir: a work directory written by `train.train_and_evaluate`.
    step: None or 'latest', 'best' (highest meta-validation accuracy) or a step number.

  Returns:
    The config saved in the workdir, the model built from it, and the unreplicated `TrainState`
    (host numpy arrays) of that checkpoint.
  """
  config = load_config(workdir)
  if config is None:
    raise FileNotFoundError(f'{os.path.join(workdir, CONFIG_FILE)} not found: {workdir} is not a '
                            'work directory written by launch/run.py.')
  model = registry.build_model(config)
  manager = make_manager(workdir, config, read_only=True)
  try:
    state = restore_state(manager, config, model, step)
  finally:
    manager.close()
  return config, model, state


class _QuietOrbax:
  """Log filter: Orbax reports every step of every save at INFO, and warns that a manager opened
  read-only (to evaluate) is read-only; keep its other warnings only."""

  def filter(self, record) -> bool:
    if f'{os.sep}orbax{os.sep}' not in record.pathname:
      return True
    return (record.levelno >= std_logging.WARNING
            and not str(record.msg).startswith('Given directory is read only'))


def quiet_orbax_logs() -> None:
  """Installs the filter on absl's logger (the launchers and the sweep and study workers)."""
  logging.get_absl_logger().addFilter(_QuietOrbax())
