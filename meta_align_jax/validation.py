"""Checks that fail before compiling: the config alone, and a batch against the config.

Every error names the config field or batch entry at fault and says what would be valid.
"""

from __future__ import annotations

import numpy as np

from meta_align_jax import augment, losses, lowres, parallel, ssl
from meta_align_jax.fast import execution
from meta_align_jax.feeds import gather_mode
from meta_align_jax.meta import learners


def _choice(value, options, field):
  if value not in options:
    raise ValueError(f'{field}={value!r}: use one of {tuple(options)}.')


def _positive(value, field, allow_zero=False):
  if not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
    raise ValueError(f'{field}={value!r}: must be an integer >= {0 if allow_zero else 1}.')


def check_config(config) -> None:
  """Validates the fields the core library reads; raises ValueError naming the field."""
  t, a, m = config.task, config.align, config.meta
  for name in ('ways', 'shots', 'queries', 'tasks_per_device'):
    _positive(t[name], f'config.task.{name}')
  if t.ways < 2:
    raise ValueError(f'config.task.ways={t.ways}: a classification task needs at least 2 classes.')
  meta_on = tuple(t.meta_on)
  if not meta_on or any(s not in ('source', 'target') for s in meta_on):
    raise ValueError(f"config.task.meta_on={meta_on!r}: use a non-empty tuple of 'source'/'target'.")
  check_modalities(config)
  augment.check(config)
  learners.LEARNERS.check(m.learner)
  _positive(m.inner_steps, 'config.meta.inner_steps', allow_zero=True)
  _choice(m.inner_opt, ('sgd', 'adam'), 'config.meta.inner_opt')
  if learners.adapts(m.learner) and m.inner_steps == 0:
    raise ValueError(f"config.meta.inner_steps=0 with config.meta.learner={m.learner!r}: "
                     'an adapting learner needs at least one inner step.')
  if a.enabled:
    _positive(a.pairs, 'config.align.pairs')
    _positive(a.ways, 'config.align.ways')
    losses.ALIGN_LOSSES.check(a.loss)
    _choice(a.mode, ('gradient', 'reptile'), 'config.align.mode')
    _choice(a.kind, ('weak', 'strong'), 'config.align.kind')
    if a.pairs % a.ways:
      raise ValueError(f'config.align.pairs={a.pairs} is not divisible by config.align.ways='
                       f'{a.ways}: every alignment class gets pairs/ways pairs.')
    if a.loss == 'infonce' and a.kind != 'strong':
      raise ValueError("config.align.loss='infonce' needs config.align.kind='strong' (instance "
                       "pairs); weak pairs use 'proto_triplet' or 'cosine'.")
  _choice(config.eval.method, ('finetune', 'proto'), 'config.eval.method')
  for name in ('ways', 'shots', 'queries', 'num_episodes', 'batch_episodes'):
    _positive(config.eval[name], f'config.eval.{name}')
  _positive(config.eval.inner_steps, 'config.eval.inner_steps', allow_zero=True)
  _choice(config.optim.name, ('adam', 'adamw', 'sgd', 'momentum'), 'config.optim.name')
  check_protocol(config)
  execution.check(config)   # its fields only; `auto` is resolved once, by build_model
  gather_mode.check_config(config)


def check_modalities(config) -> None:
  """`config.task.modalities`: both sides, or ('target',) alone (single-modality few-shot
  learning) with nothing that needs a source: no source tasks, alignment, retrieval or shared
  encoder."""
  from meta_align_jax.models import registry  # pylint: disable=g-import-not-at-top
  have = registry.sides(config)
  if have not in (registry.SIDES, registry.SINGLE):
    raise ValueError(f'config.task.modalities={have!r}: use {registry.SIDES} (meta-alignment) or '
                     f'{registry.SINGLE} (single-modality few-shot learning on config.target).')
  if have == registry.SIDES:
    return
  why = ("with config.task.modalities=('target',) (single-modality few-shot learning: no source "
         'encoder, no source data)')
  if tuple(config.task.meta_on) != ('target',):
    raise ValueError(f'config.task.meta_on={tuple(config.task.meta_on)!r} {why}: set '
                     "config.task.meta_on=('target',).")
  if config.align.enabled:
    raise ValueError(f'config.align.enabled=True {why}: there is nothing to align; set '
                     'config.align.enabled=False.')
  if config.eval.get('retrieval', False):
    raise ValueError(f'config.eval.retrieval=True {why}: cross-modal retrieval needs two '
                     'modalities; set config.eval.retrieval=False.')
  if config.model.get('shared_encoder', False):
    raise ValueError(f'config.model.shared_encoder=True {why}: one encoder is already all there '
                     'is; set config.model.shared_encoder=False.')


SELECT = ('target_val', 'source_val', 'align_val', 'final')


def check_protocol(config) -> None:
  """config.lowres, config.train.select / patience, config.eval.report_both."""
  lowres.check(config)
  ssl.check(config)
  t = config.train
  select = t.get('select', 'target_val')
  _choice(select, SELECT, 'config.train.select')
  _positive(t.get('patience', 0), 'config.train.patience', allow_zero=True)
  if t.get('patience', 0) and (select == 'final' or not t.eval_every):
    raise ValueError(f'config.train.patience={t.patience} needs a validation criterion: set '
                     f"config.train.select to 'target_val'/'source_val'/'align_val' and "
                     f'config.train.eval_every > 0.')
  if lowres.enabled(config) and select == 'target_val' and not config.lowres.get('oracle', False):
    raise ValueError("config.train.select='target_val' reads target meta-val labels, which the "
                     "low-resource protocol (config.lowres.enabled) withholds from every method "
                     "but the oracle: use 'source_val', 'align_val' or 'final' (or "
                     "config.lowres.oracle=True for the oracle).")
  lowres.check_applied(config)


check_target_train_classes = lowres.check_target_train_classes   # (one definition: lowres.py)


def _lead(config) -> tuple[int, ...]:
  d = parallel.num_batch_devices(config)
  return ((d,) if d is not None else ()) + (config.task.tasks_per_device,)


def expected_batch_shapes(config) -> dict:
  """Shapes the train step expects, keyed by batch path (a tuple of keys)."""
  t, lead = config.task, _lead(config)
  src, tgt = tuple(config.source.input_shape), tuple(config.target.input_shape)
  out = {}
  for side in t.meta_on:
    shape = src if side == 'source' else tgt
    out[(side, 'support', 'x')] = lead + (t.ways * t.shots,) + shape
    out[(side, 'support', 'y')] = lead + (t.ways * t.shots,)
    out[(side, 'query', 'x')] = lead + (t.ways * t.queries,) + shape
    out[(side, 'query', 'y')] = lead + (t.ways * t.queries,)
  if config.align.enabled:
    p = config.align.pairs
    out[('align', 'source_x')] = lead + (p,) + src
    out[('align', 'target_x')] = lead + (p,) + tgt
    out[('align', 'y')] = lead + (p,)
  return out


def _explain(path, config) -> str:
  t = config.task
  d = parallel.num_batch_devices(config)
  parts = ([f'devices={d}'] if d is not None else []) + [f'config.task.tasks_per_device={t.tasks_per_device}']
  if path[0] == 'align':
    parts.append(f'config.align.pairs={config.align.pairs}')
    if path[1] != 'y':
      parts.append(f"*config.{'source' if path[1] == 'source_x' else 'target'}.input_shape")
  else:
    n = t.shots if path[1] == 'support' else t.queries
    parts.append(f"config.task.ways*{'shots' if path[1] == 'support' else 'queries'}={t.ways * n}")
    if path[2] == 'x':
      parts.append(f'*config.{path[0]}.input_shape')
  return '[' + ', '.join(parts) + ']'


def _get(batch, path):
  node = batch
  for k in path:
    if not hasattr(node, '__getitem__') or k not in node:
      return None
    node = node[k]
  return node


def check_batch(config, batch) -> None:
  """Shapes (always) and label values (for host arrays) of a batch against the config."""
  name = lambda p: 'batch' + ''.join(f'[{k!r}]' for k in p)
  for path, shape in expected_batch_shapes(config).items():
    arr = _get(batch, path)
    if arr is None:
      raise ValueError(f'{name(path)} is missing; the config asks for it (config.task.meta_on='
                       f'{tuple(config.task.meta_on)}, config.align.enabled={config.align.enabled}).')
    if tuple(arr.shape) != shape:
      raise ValueError(f'{name(path)} has shape {tuple(arr.shape)}; expected {shape} = '
                       f'{_explain(path, config)}.')
  t = config.task
  for side in t.meta_on:
    # Under label noise the observed labels may miss a class by design; the data's true labels
    # (`clean_y`, recorded by the pipeline) are what must cover the task's classes.
    clean = _get(batch, (side, 'support', 'clean_y'))
    y = clean if clean is not None else _get(batch, (side, 'support', 'y'))
    if not isinstance(y, np.ndarray):
      continue   # device arrays: checking values would cost a host sync
    y = y.reshape(-1, y.shape[-1])
    for i, row in enumerate(y):
      valid = row[row >= 0]
      if valid.size and valid.max() >= t.ways:
        raise ValueError(f"{name((side, 'support', 'y'))}: task {i} has label {valid.max()} but "
                         f'config.task.ways={t.ways}; labels must be episode-local 0..ways-1.')
      present = np.unique(valid).size
      if present < t.ways:
        raise ValueError(f'config.task.ways={t.ways} is larger than the {present} classes present '
                         f"in {name((side, 'support', 'y'))} of task {i}; lower ways or fix the data.")


def check_eval_ways(config, ways: int, head_classes: int, ways_field: str) -> None:
  """The ways an evaluation step scores against the method: fine-tuning slices the first `ways`
  logits of the head, which must have that many."""
  if isinstance(ways, bool) or not isinstance(ways, (int, np.integer)) or ways < 2:
    raise ValueError(f'{ways_field}={ways!r}: an episode needs at least 2 classes.')
  if config.eval.method == 'finetune' and ways > head_classes:
    raise ValueError(
        f"{ways_field}={ways} with config.eval.method='finetune': the model's head has "
        f'{head_classes} outputs (built for max(config.task.ways, config.eval.ways) at training), '
        f"so {ways}-way labels cannot be scored. Use config.eval.method='proto' (prototypes need "
        f'no head), or train a model whose head has at least {ways} outputs.')


def check_episodes(episodes, *, ways: int, ways_field: str, values: bool = True,
                   noisy: bool = False) -> None:
  """Evaluation episodes `{'support': {'x', 'y'}, 'query': {'x', 'y'}}` (leading episode axis)
  against the ways they are scored with: labels in 0..ways-1 (-1: padding), every one of the
  `ways` classes in each episode's support (its true labels `clean_y` when given; not checked
  when the labels are `noisy` without them: noise may drop a class by design). `values=False`
  checks the layout only."""
  for part in ('support', 'query'):
    for key in ('x', 'y'):
      if _get(episodes, (part, key)) is None:
        raise ValueError(f"episodes[{part!r}][{key!r}] is missing; evaluation episodes are "
                         "{'support': {'x', 'y'}, 'query': {'x', 'y'}} with a leading episode axis.")
    y = episodes[part]['y']
    if y.ndim != 2:
      raise ValueError(f"episodes[{part!r}]['y'] has shape {tuple(y.shape)}; expected "
                       '[episodes, examples] (a leading episode axis).')
  num = episodes['support']['y'].shape[1]
  if num < ways:
    raise ValueError(f"episodes['support']['y'] has {num} examples per episode, fewer than "
                     f'{ways_field}={ways} classes; set {ways_field} to the episodes\' ways.')
  if not values:
    return
  for part in ('support', 'query'):
    y = np.asarray(episodes[part]['y'])
    if y.size and y.max() >= ways:
      raise ValueError(
          f"episodes[{part!r}]['y'] has label {int(y.max())} but {ways_field}={ways}: labels must "
          f'be episode-local 0..ways-1. Set {ways_field} to the episodes\' number of classes '
          f'(e.g. make_eval_step(config, model, ways={int(y.max()) + 1})).')
    if y.size and y.min() < -1:
      raise ValueError(f"episodes[{part!r}]['y'] has label {int(y.min())}: use 0..ways-1, or -1 "
                       'for a padded example.')
  clean = _get(episodes, ('support', 'clean_y'))
  if clean is None and noisy:
    return
  for i, row in enumerate(np.asarray(episodes['support']['y'] if clean is None else clean)):
    present = np.unique(row[row >= 0]).size
    if present != ways:
      raise ValueError(
          f"episodes['support']['y'] of episode {i} has {present} classes but {ways_field}="
          f'{ways}: every class must have support examples. Set {ways_field} to the episodes\' '
          'number of classes or fix the episodes.')
