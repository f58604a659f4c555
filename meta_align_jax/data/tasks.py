"""One task of each kind as a graph function of a stateless seed: indices and labels only.

Tasks are drawn as example *indices* into the in-memory arrays; inputs are gathered afterwards,
once per batch (`gather_inputs`). Labels are episode-local, class-major: support is
`[class 0 x shots, class 1 x shots, ...]`, query likewise.
"""

from __future__ import annotations

import dataclasses

from meta_align_jax.data import noise
from meta_align_jax.data import sampling
from meta_align_jax.data.sampling import ClassTable
from meta_align_jax.data.tfsetup import tf


@dataclasses.dataclass(frozen=True)
class FewShotSpec:
  ways: int
  shots: int
  queries: int
  noise_rate: float = 0.0      # label noise on the support labels
  noise_kind: str = 'symmetric'
  with_clean: bool = False     # also return the support's true labels as 'clean_y'


def few_shot(seed: tf.Tensor, table: ClassTable, spec: FewShotSpec) -> dict:
  """An N-way K-shot task with Q queries per class, support and query disjoint.

  Returns {'support': {'idx', 'y', 'label'[, 'clean_y']}, 'query': {'idx', 'y', 'label'}}: `idx`
  indexes the examples `table` was built over, `y` is episode-local (noisy on the support when
  spec.noise_rate > 0), `label` is the class's row in `table`.
  """
  cls_seed, ex_seed, noise_seed = sampling.split(seed, 3)
  rows = sampling.choose_classes(cls_seed, table.num_classes, spec.ways)
  ex = sampling.draw_examples(ex_seed, table, rows, spec.shots + spec.queries)   # [N, K+Q]
  support_y = sampling.local_labels(spec.ways, spec.shots)
  query_y = sampling.local_labels(spec.ways, spec.queries)
  support = {
      'idx': tf.reshape(ex[:, :spec.shots], [-1]),
      'y': noise.corrupt(noise_seed, support_y, spec.ways, spec.noise_rate, spec.noise_kind),
      'label': tf.repeat(rows, spec.shots),
  }
  if spec.with_clean:
    support['clean_y'] = support_y
  query = {
      'idx': tf.reshape(ex[:, spec.shots:], [-1]),
      'y': query_y,
      'label': tf.repeat(rows, spec.queries),
  }
  return {'support': support, 'query': query}


@dataclasses.dataclass(frozen=True)
class AlignPools:
  """What alignment pairs are drawn from; all tables have the same rows (the alignment classes).

  Weak pairs draw source examples from `source` and target examples from `target` independently.
  Strong pairs draw rows of `pairs` (indices into `pair_source` / `pair_target`, examples sharing an
  example_id). Noisy pairs take their target example from `target`, in another class.
  """
  target: ClassTable
  source: ClassTable | None = None
  pairs: ClassTable | None = None
  pair_source: tf.Tensor | None = None
  pair_target: tf.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class AlignSpec:
  ways: int
  pairs: int
  kind: str = 'weak'
  noise_rate: float = 0.0
  noise_kind: str = 'symmetric'


def align(seed: tf.Tensor, pools: AlignPools, spec: AlignSpec) -> dict:
  """P alignment pairs, P / ways for each of `ways` classes.

  Returns {'source_idx', 'target_idx', 'y', 'target_clean_y'}: `y` is the pair's episode-local
  label (the source example's class), `target_clean_y` the class the target example really belongs
  to; they differ exactly for the pairs label noise made cross classes.
  """
  cls_seed, src_seed, tgt_seed, noise_seed, swap_seed = sampling.split(seed, 5)
  per_class = spec.pairs // spec.ways
  rows = sampling.choose_classes(cls_seed, pools.target.num_classes, spec.ways)
  y = sampling.local_labels(spec.ways, per_class)
  if spec.kind == 'strong':
    pair = tf.reshape(sampling.draw_examples(src_seed, pools.pairs, rows, per_class), [-1])
    source_idx = tf.gather(pools.pair_source, pair)
    target_idx = tf.gather(pools.pair_target, pair)
  else:
    source_idx = tf.reshape(sampling.draw_examples(src_seed, pools.source, rows, per_class), [-1])
    target_idx = tf.reshape(sampling.draw_examples(tgt_seed, pools.target, rows, per_class), [-1])
  true_y = noise.corrupt(noise_seed, y, spec.ways, spec.noise_rate, spec.noise_kind)
  if spec.noise_rate > 0:
    swapped = sampling.draw_one(swap_seed, pools.target, tf.gather(rows, true_y))
    target_idx = tf.where(tf.equal(true_y, y), target_idx, swapped)
  return {'source_idx': source_idx, 'target_idx': target_idx, 'y': y, 'target_clean_y': true_y}


def gather_few_shot(task: dict, x: tf.Tensor) -> dict:
  """Replaces 'idx' by the inputs 'x' in a (batched) few-shot task."""
  out = {}
  for part, fields in task.items():
    fields = dict(fields)
    fields['x'] = tf.gather(x, fields.pop('idx'))
    out[part] = fields
  return out


def gather_align(pairs: dict, source_x: tf.Tensor, target_x: tf.Tensor) -> dict:
  return {
      'source_x': tf.gather(source_x, pairs['source_idx']),
      'target_x': tf.gather(target_x, pairs['target_idx']),
      'y': pairs['y'],
      'target_clean_y': pairs['target_clean_y'],
  }
