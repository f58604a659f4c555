"""The training input pipeline: one batch of tasks per step, a pure function of (seed, step).

  tf.data.Dataset.counter(start_step * tasks)           # task counter, `tasks` per step per host
    .map(draw one task's indices and labels)           # stateless ops seeded by (seed, step, task)
    .batch(tasks)                                      # one step
    .map(gather inputs from in-memory tensors, reshape to [devices, tasks_per_device, ...])
    .prefetch(config.data.prefetch)

Because every task is drawn from its own folded seed, the batch of step s does not depend on what
came before it: an iterator started at step s yields exactly what an iterator started at 0 yields
at step s, so resuming from a checkpoint is exact. Each host draws different tasks (the task index
is offset by `jax.process_index()`), which is the per-host shard of the global task stream.

Batch layout (D: `devices`, the execution's device axis, omitted when None; T:
`config.task.tasks_per_device`; N, K, Q: `config.task.{ways,shots,queries}`; P: `config.align.pairs`):
  source.support.{x [D,T,N*K,*source.input_shape], y [D,T,N*K], label [D,T,N*K]}
  source.query.{x [D,T,N*Q,...], y, label}              (when 'source' in config.task.meta_on)
  align.{source_x [D,T,P,...], target_x [D,T,P,*target.input_shape], y [D,T,P],
         target_clean_y [D,T,P]}                        (when config.align.enabled)
  target.support.{x, y, clean_y, label}, target.query.{x, y, label}
                                                        (when 'target' in config.task.meta_on)
`y` is episode-local (0..N-1, class-major); `label` is the class's index in the meta-train class
list (splits['train']), for global-classifier baselines. On noisy data, `y` of the target support
and of alignment pairs is the observed label and `clean_y` / `target_clean_y` the true class.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Iterator

import jax
import numpy as np

from meta_align_jax import io
from meta_align_jax.data import checks
from meta_align_jax.data import lowres as lowres_data
from meta_align_jax.data import sampling
from meta_align_jax.data import splits as splits_lib
from meta_align_jax.data import tasks
from meta_align_jax.data.loading import ModalityData, Sources, load_sources
from meta_align_jax.data.sampling import ClassTable
from meta_align_jax.data.tfsetup import configure, tf

TARGET_SUBSET_FILE = io.TARGET_SUBSET_FILE


def class_groups(data: ModalityData, names: list[str]) -> list[np.ndarray]:
  """For each class name, the indices of `data`'s examples of that class."""
  index = {n: i for i, n in enumerate(data.class_names)}
  return [np.flatnonzero(data.label == index[n]) for n in names]


def _strong_pairs(source: ModalityData, target: ModalityData, target_groups: list[np.ndarray],
                  names: list[str]):
  """Pairs (source idx, target idx) sharing an example_id, grouped by class like `target_groups`."""
  pair_source, pair_target, groups = [], [], []
  for name, src, tgt in zip(names, class_groups(source, names), target_groups):
    by_id = {}
    for s in src:
      by_id.setdefault(int(source.example_id[s]), int(s))
    start = len(pair_source)
    for t in tgt:
      s = by_id.get(int(target.example_id[t]))
      if s is not None:
        pair_source.append(s)
        pair_target.append(int(t))
    if len(pair_source) == start:
      raise ValueError(f"config.align.kind='strong' but class {name!r} has no source example sharing an "
                       f'example_id with its target training examples.')
    groups.append(np.arange(start, len(pair_source)))
  return (np.asarray(pair_source, np.int32), np.asarray(pair_target, np.int32), groups)


def _unlabelled_pairs(config, sources: Sources, names: list[str], what: str = 'alignment'):
  s = sources.source
  return lowres_data.unlabelled_pairs(
      s.label, s.example_id, s.class_names, names, sources.target.example_id, seed=config.seed,
      per_class=int(config.lowres.get('pair_instances', 0)), what=what)


def _unlabelled_align_pools(config, sources: Sources, names: list[str],
                            pairs=None) -> tasks.AlignPools:
  """Strong pairs of every class in `names`, grouped by the source class; the target side is
  found by example_id and its label is never read (`data/lowres.py`). `pairs`: those pairs when
  already computed (`_unlabelled_pairs` of the same `names`)."""
  if pairs is None:
    pairs = _unlabelled_pairs(config, sources, names)
  pair_source, pair_target, groups = pairs
  table = ClassTable.build(groups, names)
  checks.check_few_shot(table, ways=config.align.ways, per_class=1, ways_field='align.ways',
                        per_class_fields='', what='the meta-train classes of strong pairs')
  # Rows are source classes: a noisy pair's swapped target comes from another source class's pairs.
  return tasks.AlignPools(target=ClassTable.build([pair_target[g] for g in groups], names),
                          pairs=table, pair_source=tf.constant(pair_source),
                          pair_target=tf.constant(pair_target))


@dataclasses.dataclass(frozen=True)
class TrainPools:
  """Everything training tasks are drawn from, built once from the data and the class split."""
  source_x: tf.Tensor | None   # None when the device gathers the inputs (index batches)
  target_x: tf.Tensor | None
  source_tasks: ClassTable | None
  target_tasks: ClassTable | None
  align: tasks.AlignPools | None
  target_subset: dict[str, np.ndarray]   # class name -> target example indices used in training
  # The meta-train classes with labelled target data (config.data.target_train_classes).
  target_classes: tuple[str, ...] = ()
  # Row of `target_tasks` -> the class's index in splits['train'] (the batches' `label`).
  target_labels: tf.Tensor | None = None


def build_train_pools(config, sources: Sources, splits: dict[str, list[str]], *,
                      with_inputs: bool = True) -> TrainPools:
  """Class tables for source tasks, target tasks and alignment pairs; checks they can be sampled.

  Target examples are restricted to the fixed subset of `config.data.target_train_shots` per class,
  and, with `config.data.target_train_classes` = N > 0, to a fixed seeded set of N meta-train
  classes (`splits.target_train_classes`): target tasks and the meta-train classes of alignment
  pairs use only those; source tasks keep every meta-train class. (Alignment classes from other
  splits, `config.align.classes` = 'train+val' or 'all', are not restricted.)

  Raises:
    ValueError: a split has fewer classes than asked for, or a class fewer examples.
  """
  train = splits['train']
  if not train:
    raise ValueError(f'config.data.split_fractions={tuple(config.data.split_fractions)} leaves no '
                     f'meta-train class.')
  global_classes = config.model.get('num_global_classes', 0)
  if 0 < global_classes < len(train):
    raise ValueError(f'config.model.num_global_classes={global_classes} is smaller than the '
                     f'{len(train)} meta-train classes the batches label.')
  src_name = f'{config.data.source_dataset}/{config.data.source_feature}'
  tgt_name = f'{config.data.target_dataset}/{config.data.target_feature}'
  meta_on_target = 'target' in config.task.meta_on
  checks.check_target_train_classes(config, len(train))
  target_classes = splits_lib.target_train_classes(
      train, int(config.data.get('target_train_classes', 0)), config.seed)
  unlabelled = config.align.enabled and lowres_data.unlabelled_strong_pairs(config)
  align_names = []
  if unlabelled:   # strong pairs over every meta-train class, drawn by their source class
    align_names = sorted(train)
  elif config.align.enabled:
    align_names = sorted(n for s in checks.ALIGN_CLASSES[config.align.classes]
                         for n in (target_classes if s == 'train' else splits[s]))
  subset_names = sorted((set() if unlabelled else set(align_names))
                        | (set(target_classes) if meta_on_target else set()))
  subset = splits_lib.target_subset(sources.target, subset_names, config.data.target_train_shots,
                                    config.seed)

  k_plus_q = config.task.shots + config.task.queries
  source_tasks = None
  if 'source' in config.task.meta_on:
    source_tasks = ClassTable.build(class_groups(sources.source, train), train)
    checks.check_few_shot(source_tasks, ways=config.task.ways, per_class=k_plus_q,
                          ways_field='task.ways',
                          per_class_fields='config.task.shots + config.task.queries',
                          what=f'the meta-train split of {src_name}')
  target_tasks = target_labels = None
  pseudo_pairs = None   # the strong pairs of every meta-train class, shared with the alignment
  if meta_on_target and lowres_data.pseudo_labels(config):
    # Target clips labelled through their strong pair: the pair's source class (what a source
    # classifier right on its own training examples gives), plus the labelled set.
    target_classes = sorted(train)
    pseudo_pairs = _unlabelled_pairs(config, sources, target_classes, what='lowres.pseudo_labels')
    _, pair_target, groups = pseudo_pairs
    target_tasks = ClassTable.build(
        [np.union1d(pair_target[g], subset.get(n, np.zeros([0], np.int32))).astype(np.int32)
         for n, g in zip(target_classes, groups)], target_classes)
  elif meta_on_target:
    target_tasks = ClassTable.build([subset[n] for n in target_classes], target_classes)
  if meta_on_target:
    row_in_train = {n: i for i, n in enumerate(train)}
    target_labels = tf.constant([row_in_train[n] for n in target_classes], tf.int32)
    checks.check_few_shot(
        target_tasks, ways=config.task.ways, per_class=k_plus_q, ways_field='task.ways',
        per_class_fields='config.task.shots + config.task.queries',
        what=f'the target training subset (config.data.target_train_shots) of {tgt_name}')

  align = None
  if unlabelled:
    align = _unlabelled_align_pools(
        config, sources, align_names,
        pairs=pseudo_pairs if pseudo_pairs is not None and target_classes == align_names else None)
  elif config.align.enabled:
    target_groups = [subset[n] for n in align_names]
    what = (f'the alignment classes (config.align.classes={config.align.classes!r}) of '
            f'{src_name} -> {tgt_name}')
    if not align_names:
      raise ValueError(f'No class for alignment: {what} is empty.')
    target_table = ClassTable.build(target_groups, align_names)
    checks.check_few_shot(target_table, ways=config.align.ways, per_class=1,
                          ways_field='align.ways', per_class_fields='', what=what)
    if config.align.kind == 'strong':
      pair_source, pair_target, groups = _strong_pairs(sources.source, sources.target,
                                                       target_groups, align_names)
      align = tasks.AlignPools(target=target_table, pairs=ClassTable.build(groups, align_names),
                               pair_source=tf.constant(pair_source),
                               pair_target=tf.constant(pair_target))
    else:
      align = tasks.AlignPools(
          target=target_table,
          source=ClassTable.build(class_groups(sources.source, align_names), align_names))
  uses_source = source_tasks is not None or align is not None   # not in single-modality mode
  return TrainPools(source_x=tf.constant(sources.source.x) if with_inputs and uses_source else None,
                    target_x=tf.constant(sources.target.x) if with_inputs else None,
                    source_tasks=source_tasks, target_tasks=target_tasks, align=align,
                    target_subset=subset, target_classes=tuple(target_classes),
                    target_labels=target_labels)


def _save_target_subset(pools: TrainPools, target: ModalityData, workdir: str,
                        num_classes: int, config_seed: int) -> None:
  """Writes the target training subset (example ids per class, and the labelled classes).

  A resumed run (the file exists) must select the same labelled target classes.
  """
  record = {n: [int(i) for i in target.example_id[idx]]
            for n, idx in sorted(pools.target_subset.items())}
  classes = sorted(pools.target_classes)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, TARGET_SUBSET_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if 'target_train_classes' in saved and saved['target_train_classes'] != classes:
      raise ValueError(
          f'{path} holds a run trained with labelled target data for other meta-train classes '
          f'({len(saved["target_train_classes"])} saved, {len(classes)} selected by '
          f'config.data.target_train_classes={num_classes} and config.seed={config_seed}). Use a '
          f'fresh workdir for a different experiment.')
  io.write_atomic(path, json.dumps({'target_train_classes': classes,
                                    'example_ids': record}, indent=1))


def _expected_shapes(config, devices: int | None, tasks_per_device: int,
                     index_only: bool = False) -> dict:
  lead = ((devices,) if devices else ()) + (tasks_per_device,)
  n, k, q, p = config.task.ways, config.task.shots, config.task.queries, config.align.pairs
  src, tgt = tuple(config.source.input_shape), tuple(config.target.input_shape)
  x = 'idx' if index_only else 'x'
  if index_only:   # one index per example instead of the example
    src = tgt = ()
  def few_shot(shape, clean):
    support = {x: lead + (n * k,) + shape, 'y': lead + (n * k,), 'label': lead + (n * k,)}
    if clean:
      support['clean_y'] = lead + (n * k,)
    return {'support': support,
            'query': {x: lead + (n * q,) + shape, 'y': lead + (n * q,), 'label': lead + (n * q,)}}
  out = {}
  if 'source' in config.task.meta_on:
    out['source'] = few_shot(src, False)
  if config.align.enabled:
    out['align'] = {f'source_{x}': lead + (p,) + src, f'target_{x}': lead + (p,) + tgt,
                    'y': lead + (p,), 'target_clean_y': lead + (p,)}
  if 'target' in config.task.meta_on:
    out['target'] = few_shot(tgt, True)
  return out


def train_dataset(config, *, start_step: int = 0, workdir: str | None = None,
                  sources: Sources | None = None, devices: int | None = None,
                  index_only: bool = False) -> tf.data.Dataset:
  """The endless tf.data pipeline behind `make_train_iterator` (same arguments)."""
  configure()
  checks.check_train_config(config)
  devices, per_device = checks.batch_layout(config, devices)
  if int(start_step) != start_step or start_step < 0:
    raise ValueError(f'start_step={start_step!r} must be a non-negative integer.')
  sources = sources if sources is not None else load_sources(config)
  checks.check_sources(config, sources)
  writer = workdir if (workdir is not None and jax.process_index() == 0) else None
  splits = splits_lib.make_splits(config, writer, sources=sources)
  pools = build_train_pools(config, sources, splits, with_inputs=not index_only)
  if writer is not None:
    _save_target_subset(pools, sources.target, writer,
                        int(config.data.get('target_train_classes', 0)), int(config.seed))

  local_tasks = (devices or 1) * per_device
  task_offset = jax.process_index() * local_tasks
  seed = sampling.base_seed(config.seed, sampling.STREAM_TRAIN)
  source_spec = tasks.FewShotSpec(config.task.ways, config.task.shots, config.task.queries)
  target_spec = tasks.FewShotSpec(
      config.task.ways, config.task.shots, config.task.queries,
      noise_rate=float(config.data.target_noise), noise_kind=config.data.noise_kind,
      with_clean=True)
  align_spec = tasks.AlignSpec(
      config.align.ways, config.align.pairs, kind=config.align.kind,
      noise_rate=float(config.data.align_noise), noise_kind=config.data.noise_kind)

  def draw(counter):
    step, task = counter // local_tasks, counter % local_tasks
    task_seed = sampling.fold(seed, step, task_offset + task)
    source_seed, align_seed, target_seed = sampling.split(task_seed, 3)
    out = {}
    if pools.source_tasks is not None:
      out['source'] = tasks.few_shot(source_seed, pools.source_tasks, source_spec)
    if pools.align is not None:
      out['align'] = tasks.align(align_seed, pools.align, align_spec)
    if pools.target_tasks is not None:
      target = tasks.few_shot(target_seed, pools.target_tasks, target_spec)
      for part in ('support', 'query'):   # rows of the target table -> meta-train class indices
        target[part]['label'] = tf.gather(pools.target_labels, target[part]['label'])
      out['target'] = target
    return out

  lead = [devices, per_device] if devices else [per_device]

  def gather(batch):
    if index_only:
      return tf.nest.map_structure(lambda v: tf.reshape(v, lead + v.shape[1:].as_list()), batch)
    out = {}
    if 'source' in batch:
      out['source'] = tasks.gather_few_shot(batch['source'], pools.source_x)
    if 'align' in batch:
      out['align'] = tasks.gather_align(batch['align'], pools.source_x, pools.target_x)
    if 'target' in batch:
      out['target'] = tasks.gather_few_shot(batch['target'], pools.target_x)
    return tf.nest.map_structure(lambda v: tf.reshape(v, lead + v.shape[1:].as_list()), out)

  ds = tf.data.Dataset.counter(int(start_step) * local_tasks)
  ds = ds.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_tasks, drop_remainder=True)
  ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if config.data.prefetch:
    ds = ds.prefetch(tf.data.AUTOTUNE if config.data.prefetch < 0 else config.data.prefetch)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)

  expected = _expected_shapes(config, devices, per_device, index_only)
  got = tf.nest.map_structure(lambda s: tuple(s.shape.as_list()), ds.element_spec)
  if got != expected:  # A bug here, not a user error: the step would silently recompile or fail.
    raise AssertionError(f'Training batch shapes {got} differ from the contract {expected}.')
  logging.info('Training pipeline: %d local tasks per step (devices=%s, tasks_per_device=%d), '
               '%d meta-train classes (%d with labelled target data), starting at step %d, '
               'inputs gathered on the %s.',
               local_tasks, devices, per_device, len(splits['train']), len(pools.target_classes),
               start_step, 'device' if index_only else 'host')
  return ds


def make_train_iterator(config, *, start_step: int = 0, workdir: str | None = None,
                        sources: Sources | None = None, devices: int | None = None,
                        index_only: bool = False) -> Iterator[dict]:
  """Endless iterator of training batches (nested dicts of numpy arrays), one per step.

  Args:
    config: the experiment config.
    start_step: the step of the first batch; the batch of step s is a pure function of
      (config.seed, s) (and the host), so resuming at a checkpoint's step is exact.
    workdir: when given, `splits.json` and `target_train_subset.json` are written there (by
      process 0).
    sources: the loaded source/target modalities; `load_sources(config)` when None (tests and
      research code inject their own `Sources` here).
    devices: the size of the batch's leading device axis, as the execution resolves it
      (`parallel.num_batch_devices`); None: no device axis.
    index_only: yield index batches: every input replaced by its index into `sources.<side>.x`
      (`idx` for few-shot tasks, `source_idx` / `target_idx` for alignment pairs), which
      `meta_align_jax.feeds.device_gather` gathers on the device.

  The examples are gathered here, on the host. `config.data.gather` is the feed's choice:
  `meta_align_jax.feeds.pipeline.Pipeline` (what `train.train` uses) asks this function for
  host or index batches accordingly.

  Raises:
    ValueError: a config field the data cannot satisfy (named in the message), or missing data.
  """
  return train_dataset(config, start_step=start_step, workdir=workdir, sources=sources,
                       devices=devices, index_only=index_only).as_numpy_iterator()
