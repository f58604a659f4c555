"""Stateless sampling primitives for episodes: class tables, class and example draws, seeds.

Everything an episode draws comes from `tf.random.stateless_*` ops whose seed is folded from
(`config.seed`, stream, step, task): an episode is a pure function of those numbers, so a pipeline
restarted at any step reproduces the batches exactly. (Stateless ops are reproducible for a given
TensorFlow version; the saved evaluation episodes do not depend even on that.)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from meta_align_jax.data.tfsetup import tf

# Streams of random numbers derived from config.seed, one per consumer.
STREAM_TRAIN = 1
STREAM_EVAL = {'train': 11, 'val': 12, 'test': 13}


def base_seed(seed: int, stream: int) -> tf.Tensor:
  return tf.constant([int(seed), int(stream)], tf.int64)


def fold(seed: tf.Tensor, *data) -> tf.Tensor:
  """Folds integers (Python or scalar tensors) into an int64 `[2]` seed."""
  for d in data:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(d, tf.int64))
  return seed


def split(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


@dataclasses.dataclass(frozen=True)
class ClassTable:
  """Examples grouped by class, as constant tensors to sample from.

  Attributes:
    members: int32 `[C, M]`; row c lists the indices (into some array of examples) of class c,
      padded with its first entry up to M = the largest class.
    counts: int32 `[C]`, the number of real entries per row (>= 1).
    names: the C class names, in row order.
  """
  members: tf.Tensor
  counts: tf.Tensor
  names: tuple[str, ...]
  min_count: int

  @classmethod
  def build(cls, groups: Sequence[np.ndarray], names: Sequence[str]) -> 'ClassTable':
    """From one index array per class (each non-empty)."""
    if len(groups) != len(names) or not groups:
      raise ValueError('ClassTable needs one non-empty index array per class name.')
    counts = np.array([len(g) for g in groups], np.int32)
    if counts.min() < 1:
      raise ValueError(f'class {names[int(counts.argmin())]!r} has no examples.')
    members = np.empty((len(groups), counts.max()), np.int32)
    for row, g in zip(members, groups):
      row[:] = g[0]
      row[:len(g)] = g
    return cls(members=tf.constant(members), counts=tf.constant(counts), names=tuple(names),
               min_count=int(counts.min()))

  @property
  def num_classes(self) -> int:
    return len(self.names)


def choose_classes(seed: tf.Tensor, num_classes: int, ways: int) -> tf.Tensor:
  """`ways` distinct rows out of `num_classes`, int32 `[ways]`, in random order."""
  keys = tf.random.stateless_uniform([num_classes], seed)
  return tf.argsort(keys)[:ways]


def draw_examples(seed: tf.Tensor, table: ClassTable, rows: tf.Tensor, num: int) -> tf.Tensor:
  """int32 `[len(rows), num]` example indices of the classes `rows`.

  Within a class the draws are distinct as long as `num` <= its size; beyond that the class's
  random permutation is cycled (every example used as evenly as possible).
  """
  members = tf.gather(table.members, rows)                              # [n, M]
  counts = tf.gather(table.counts, rows)                                # [n]
  width = members.shape[1]
  keys = tf.random.stateless_uniform(tf.shape(members), seed)
  keys = tf.where(tf.range(width)[None, :] < counts[:, None], keys, 2.0)   # padding sorts last
  order = tf.argsort(keys, axis=1)                                      # [n, M]
  slots = tf.math.floormod(tf.range(num)[None, :], counts[:, None])     # [n, num]
  return tf.gather(members, tf.gather(order, slots, batch_dims=1), batch_dims=1)


def draw_one(seed: tf.Tensor, table: ClassTable, rows: tf.Tensor) -> tf.Tensor:
  """One uniformly drawn example index per entry of `rows` (int32, same shape)."""
  counts = tf.gather(table.counts, rows)
  u = tf.random.stateless_uniform(tf.shape(rows), seed)
  pos = tf.minimum(tf.cast(u * tf.cast(counts, tf.float32), tf.int32), counts - 1)
  return tf.gather_nd(table.members, tf.stack([rows, pos], axis=-1))


def local_labels(ways: int, per_class: int) -> tf.Tensor:
  """int32 `[ways * per_class]`: 0 repeated per_class times, then 1, ... (class-major order)."""
  return tf.repeat(tf.range(ways, dtype=tf.int32), per_class)
