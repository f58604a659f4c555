"""Validation of the data-related config fields, with errors that name the field at fault.

`check_train_config` / `check_eval_config` look at the config alone and run before anything is
loaded; `check_few_shot` runs once the classes of a split are known, before any pipeline is built.
"""

from __future__ import annotations

import jax

from meta_align_jax import lowres
from meta_align_jax.data import noise
from meta_align_jax.data.loading import single_modality
from meta_align_jax.data.sampling import ClassTable

ALIGN_KINDS = ('weak', 'strong')
ALIGN_CLASSES = {'train': ('train',), 'train+val': ('train', 'val'), 'all': ('train', 'val', 'test')}
META_ON = ('source', 'target')


def _positive(config, field: str) -> int:
  group, name = field.split('.')
  value = config[group][name]
  if int(value) != value or value < 1:
    raise ValueError(f'config.{field}={value!r} must be a positive integer.')
  return int(value)


def batch_layout(config, devices: int | None) -> tuple[int | None, int]:
  """(D, T): the batch's device axis (`devices`, None: none) and tasks per device, checked.

  `devices` is the execution's (`parallel.num_batch_devices(config)`), handed in by the caller:
  the data package does not resolve `config.execution`.
  """
  tasks = _positive(config, 'task.tasks_per_device')
  if devices is None and jax.process_count() > 1:
    raise ValueError(
        f'{jax.process_count()} processes but the batch has no device axis (config.execution.'
        f'parallel={config.execution.parallel!r} resolves to a single-device step): each host '
        f'feeds its {jax.local_device_count()} local devices a [devices, tasks_per_device, ...] '
        f"batch, so multi-host training needs config.execution.parallel='pmap' (or 'auto').")
  if devices is not None and devices != jax.local_device_count():
    raise ValueError(f'The batch device axis ({devices}) must equal the number of local devices '
                     f'({jax.local_device_count()}).')
  return devices, tasks


check_target_train_classes = lowres.check_target_train_classes   # (one definition: lowres.py)


def check_train_config(config) -> None:
  """Config-only checks for the training iterator."""
  for field in ('task.ways', 'task.shots', 'task.queries', 'task.tasks_per_device',
                'data.target_train_shots'):
    _positive(config, field)
  classes = config.data.get('target_train_classes', 0)
  if isinstance(classes, bool) or int(classes) != classes or classes < 0:
    raise ValueError(f'config.data.target_train_classes={classes!r} must be an integer >= 0 '
                     f'(0: every meta-train class has labelled target data).')
  noise.check(config)
  meta_on = tuple(config.task.meta_on)
  if not meta_on or any(m not in META_ON for m in meta_on):
    raise ValueError(f'config.task.meta_on={meta_on!r}: use a non-empty subset of {META_ON}.')
  if 'target' in meta_on:
    need = config.task.shots + config.task.queries
    if need > config.data.target_train_shots:
      raise ValueError(
          f'Target tasks need config.task.shots + config.task.queries = {need} examples per class, '
          f'but only config.data.target_train_shots={config.data.target_train_shots} target '
          f'examples per class are available for training.')
    if config.data.target_noise > 0 and config.task.ways < 2:
      raise ValueError('config.data.target_noise > 0 needs config.task.ways >= 2.')
  if config.data.prefetch < 0 and config.data.prefetch != -1:
    raise ValueError(f'config.data.prefetch={config.data.prefetch}: use a count >= 0, or -1 (autotune).')
  if config.align.enabled:
    pairs, ways = _positive(config, 'align.pairs'), _positive(config, 'align.ways')
    if pairs % ways:
      raise ValueError(f'config.align.pairs={pairs} must be divisible by config.align.ways={ways} '
                       f'(every alignment class gets the same number of pairs).')
    if config.align.kind not in ALIGN_KINDS:
      raise ValueError(f'config.align.kind={config.align.kind!r}: use one of {ALIGN_KINDS}.')
    if config.align.classes not in ALIGN_CLASSES:
      raise ValueError(f'config.align.classes={config.align.classes!r}: use one of '
                       f'{tuple(ALIGN_CLASSES)}.')
    if config.align.kind == 'strong' and (
        config.data.source_dataset != config.data.target_dataset):
      raise ValueError(
          f"config.align.kind='strong' pairs examples by example_id, which needs source and target "
          f'from one dataset; config.data.source_dataset={config.data.source_dataset!r}, '
          f'config.data.target_dataset={config.data.target_dataset!r}. Use weak pairs.')
    if config.data.align_noise > 0 and ways < 2:
      raise ValueError('config.data.align_noise > 0 needs config.align.ways >= 2.')


def check_eval_config(config, split: str, num_episodes: int) -> None:
  """Config-only checks for the evaluation episodes of `split`."""
  if split not in ('train', 'val', 'test'):
    raise ValueError(f"split={split!r}: use 'train', 'val' or 'test'.")
  for field in ('eval.ways', 'eval.shots', 'eval.queries'):
    _positive(config, field)
  if int(num_episodes) != num_episodes or num_episodes < 1:
    raise ValueError(f'num_episodes={num_episodes!r} (config.eval.num_episodes / '
                     f'config.train.val_episodes) must be a positive integer.')
  noise.check(config)
  if config.data.target_noise > 0 and config.eval.ways < 2:
    raise ValueError('config.data.target_noise > 0 needs config.eval.ways >= 2.')


def check_few_shot(table: ClassTable, *, ways: int, per_class: int, ways_field: str,
                   per_class_fields: str, what: str) -> None:
  """Raises when `table` has fewer than `ways` classes or a class with fewer than `per_class`."""
  if ways > table.num_classes:
    raise ValueError(f'config.{ways_field}={ways} exceeds the {table.num_classes} classes of {what}. '
                     f'Lower it, or change config.data.split_fractions.')
  if per_class > table.min_count:
    counts = table.counts.numpy()
    smallest = table.names[int(counts.argmin())]
    raise ValueError(
        f'{per_class_fields} = {per_class} exceeds the {table.min_count} examples of class '
        f'{smallest!r} in {what}; support and query must be disjoint.')


def check_sources(config, sources) -> None:
  """Injected or loaded modalities must have the per-example shapes the config declares (the
  target's only, in single-modality few-shot learning: there is no source)."""
  for side in (('target',) if single_modality(config) else ('source', 'target')):
    data = getattr(sources, side)
    want = tuple(int(d) for d in config[side].input_shape)
    if tuple(data.x.shape[1:]) != want:
      raise ValueError(f'config.{side}.input_shape={want} does not match the {side} data '
                       f'({config.data[side + "_dataset"]!r}), whose examples have shape '
                       f'{tuple(data.x.shape[1:])}.')
