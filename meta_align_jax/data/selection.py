"""Checkpoint-selection data that holds no target label (`config.train.select`).

- 'source_val': fixed SOURCE few-shot episodes on the meta-val classes (source labels only);
- 'align_val': strong pairs of meta-val classes, found through the source side and example_id
  (`data/lowres.py`): target inputs, no target label.
Both are pure functions of the config and the data (their own random streams), written as indices
into the examples so that exported bundles carry them (`data/export.py`).
"""

from __future__ import annotations

import numpy as np

from meta_align_jax import io
from meta_align_jax.data import checks
from meta_align_jax.data import lowres as lowres_data
from meta_align_jax.data import sampling
from meta_align_jax.data import splits as splits_lib
from meta_align_jax.data import tasks
from meta_align_jax.data.episodes import class_groups
from meta_align_jax.data.loading import Sources, load_sources
from meta_align_jax.data.sampling import ClassTable
from meta_align_jax.data.tfsetup import configure

STREAM_SOURCE_VAL = 21
ALIGN_VAL_PER_CLASS = 10     # strong pairs per meta-val class (fewer when a class has fewer)


def selection_indices(config, sources: Sources | None = None, *,
                      splits: dict | None = None) -> dict[str, np.ndarray]:
  """{'source_val.support_idx', 'source_val.support_y', 'source_val.query_idx',
  'source_val.query_y'} and/or {'align_val.source_idx', 'align_val.target_idx'}: what
  `config.train.select` needs (empty for 'target_val' / 'final')."""
  select = config.train.get('select', 'target_val')
  if select not in ('source_val', 'align_val'):
    return {}
  configure()
  sources = sources if sources is not None else load_sources(config)
  # (The class split asks which class names have examples in both modalities; pass `splits` to
  # skip it. Nothing below reads a target label.)
  names = (splits or splits_lib.make_splits(config, sources=sources))['val']
  if not names:
    raise ValueError(f"config.train.select={select!r} needs meta-val classes; "
                     f'config.data.split_fractions={tuple(config.data.split_fractions)} has none.')
  out = {}
  if select == 'source_val':
    table = ClassTable.build(class_groups(sources.source, names), names)
    checks.check_few_shot(table, ways=config.eval.ways,
                          per_class=config.eval.shots + config.eval.queries,
                          ways_field='eval.ways',
                          per_class_fields='config.eval.shots + config.eval.queries',
                          what='the meta-val split of the source modality (train.select)')
    spec = tasks.FewShotSpec(config.eval.ways, config.eval.shots, config.eval.queries)
    seed = sampling.base_seed(config.seed, STREAM_SOURCE_VAL)
    eps = [tasks.few_shot(sampling.fold(seed, e), table, spec)
           for e in range(int(config.train.val_episodes))]
    for part in ('support', 'query'):
      for k in ('idx', 'y'):
        out[f'source_val.{part}_{k}'] = np.stack([ep[part][k].numpy() for ep in eps]).astype(
            np.int32)
  else:
    s = sources.source
    src, tgt, _ = lowres_data.unlabelled_pairs(
        s.label, s.example_id, s.class_names, names, sources.target.example_id,
        seed=config.seed, per_class=ALIGN_VAL_PER_CLASS, what='train.select=align_val')
    out['align_val.source_idx'], out['align_val.target_idx'] = src, tgt
  return out


def gather_selection(indices: dict, source_x, target_x) -> dict:
  """The selection data with inputs: {'source_val': {'support': {'x','y'}, 'query': {...}}} and/or
  {'align_val': {'source_x', 'target_x'}} (`io.gather_selection`, shared with exported bundles)."""
  return io.gather_selection(indices, {'source': source_x, 'target': target_x}.__getitem__)


def make_selection_data(config, *, sources: Sources | None = None) -> dict:
  sources = sources if sources is not None else load_sources(config)
  return gather_selection(selection_indices(config, sources), sources.source.x, sources.target.x)
