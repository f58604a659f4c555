"""In-memory modalities and a small config shared by the data-package tests.

Every input is filled with its example's index, so that every gathered input can be traced back
to its example and class (`index_of`).
"""

import itertools

import jax
import numpy as np
import pytest

from configs import default
from meta_align_jax import data

NUM_CLASSES = 20
PER_CLASS = 12
SOURCE_SHAPE = (4, 4, 3)
TARGET_SHAPE = (5, 2)


def make_modality(shape, *, id_offset=0, drop_class=None):
  n = NUM_CLASSES * PER_CLASS
  label = np.repeat(np.arange(NUM_CLASSES), PER_CLASS).astype(np.int32)
  keep = label != drop_class if drop_class is not None else np.ones(n, bool)
  index = np.arange(n)[keep]
  # Every input is filled with its example's index, so batches can be decoded back to examples.
  x = np.broadcast_to(index.reshape((-1,) + (1,) * len(shape)).astype(np.float32),
                      (len(index),) + shape).copy()
  names = [f'class_{i:02d}' for i in range(NUM_CLASSES)]
  return data.ModalityData(x=x, label=label[keep], class_names=names,
                           example_id=index.astype(np.int64) + id_offset)


@pytest.fixture(scope='module')
def sources():
  return data.Sources(source=make_modality(SOURCE_SHAPE), target=make_modality(TARGET_SHAPE))


def make_config(**overrides):
  c = default.get_config()
  c.source.input_shape = SOURCE_SHAPE
  c.target.input_shape = TARGET_SHAPE
  c.task.ways, c.task.shots, c.task.queries, c.task.tasks_per_device = 3, 2, 3, 2
  c.align.pairs, c.align.ways = 6, 3
  c.eval.ways, c.eval.shots, c.eval.queries = 3, 1, 4
  c.eval.num_episodes, c.train.val_episodes = 40, 20
  c.data.target_train_shots = 5
  c.data.source_dataset = c.data.target_dataset = 'in_memory'
  c.execution.parallel = 'jit'
  for k, v in overrides.items():   # 'group__field' sets config.group.field
    *groups, name = k.split('__')
    node = c
    for g in groups:
      node = node[g]
    node[name] = v
  return c


def draw_batches(config, sources, n, **kw):
  return list(itertools.islice(data.make_train_iterator(config, sources=sources, **kw), n))


def index_of(x, lead=1):
  """Example indices encoded in gathered inputs `[*lead_axes, *input_shape]` -> `[*lead_axes]`."""
  return x.reshape(x.shape[:lead] + (-1,))[..., 0].astype(np.int64)


def tasks_of(batch_part):
  """Iterates over the tasks of a [T, ...] part of a batch."""
  leaves, treedef = jax.tree.flatten(batch_part)
  for t in range(leaves[0].shape[0]):
    yield jax.tree.unflatten(treedef, [l[t] for l in leaves])


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)
