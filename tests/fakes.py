"""Shared by the loop tests: `FakeData` (the data contract in memory), tiny configs, helpers.

`FakeData`'s batch for step s is a pure function of (seed, s); it is passed to the library through
its `data=` seam. The persistent compilation cache is on for every test (tests/conftest.py).
"""

import itertools
import json
import os

import jax
import numpy as np
import pytest

from configs import test as test_config
from meta_align_jax import checkpoint, parallel, train
from tests.tiny import override

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeData:
  """Class-structured Gaussian data in the contract's layout; classes split 50/25/25 %.

  Args:
    num_classes: 12 by default (6 meta-train, 3 meta-val, 3 meta-test classes).
    nan_at: batch index (0-based step) whose source inputs are NaN.
    hooks: {batch index: callable} run when that batch is drawn (e.g. to send a signal).
  """

  def __init__(self, num_classes=12, nan_at=None, hooks=None):
    self.nan_at, self.hooks = nan_at, dict(hooks or {})
    quarter = num_classes // 4
    self._ranges = {'train': range(0, num_classes - 2 * quarter),
                    'val': range(num_classes - 2 * quarter, num_classes - quarter),
                    'test': range(num_classes - quarter, num_classes)}

  def make_splits(self, config, workdir=None):
    return {split: [f'c{i}' for i in r] for split, r in self._ranges.items()}

  def _x(self, config, side, classes, rng):
    shape = tuple(config[side].input_shape)
    protos = np.stack([np.random.default_rng([config.seed, 99, c, side == 'target'])
                       .normal(size=shape) for c in range(int(classes.max()) + 1)]
                      ).astype(np.float32)
    return protos[classes] + 0.5 * rng.normal(size=classes.shape + shape).astype(np.float32)

  def _task(self, config, side, classes, shots, queries, rng):
    ways = len(classes)
    sy, qy = np.repeat(np.arange(ways), shots), np.repeat(np.arange(ways), queries)
    return {'support': {'x': self._x(config, side, classes[sy], rng), 'y': sy.astype(np.int32)},
            'query': {'x': self._x(config, side, classes[qy], rng), 'y': qy.astype(np.int32)}}

  def _classes(self, split, ways, rng):
    r = self._ranges[split]
    if ways > len(r):
      raise ValueError(f'{ways}-way tasks but split {split!r} has {len(r)} classes')
    return r.start + rng.choice(len(r), ways, replace=False)

  def _batch(self, config, step):
    rng = np.random.default_rng([config.seed, step])
    t, a = config.task, config.align
    devices = parallel.num_batch_devices(config)
    tasks = []
    for _ in range((devices or 1) * t.tasks_per_device):
      task = {side: self._task(config, side, self._classes('train', t.ways, rng), t.shots,
                               t.queries, rng) for side in t.meta_on}
      classes = self._classes('train', a.ways, rng)
      y = np.repeat(np.arange(a.ways), a.pairs // a.ways)
      task['align'] = {'source_x': self._x(config, 'source', classes[y], rng),
                       'target_x': self._x(config, 'target', classes[y], rng),
                       'y': y.astype(np.int32)}
      tasks.append(task)
    batch = jax.tree.map(lambda *xs: np.stack(xs), *tasks)
    lead = (devices,) if devices else ()
    batch = jax.tree.map(lambda x: x.reshape(lead + (t.tasks_per_device,) + x.shape[1:]), batch)
    if step == self.nan_at:
      batch['source']['support']['x'][:] = np.nan
    return batch

  def make_train_iterator(self, config, *, start_step=0, workdir=None):
    for step in itertools.count(start_step):
      if step in self.hooks:
        self.hooks[step]()
      yield self._batch(config, step)

  def make_eval_episodes(self, config, split, num_episodes=None, workdir=None):
    e = config.eval
    rng = np.random.default_rng([config.seed, 7, self._ranges[split].start])
    episodes = [self._task(config, 'target', self._classes(split, e.ways, rng), e.shots,
                           e.queries, rng) for _ in range(num_episodes or e.num_episodes)]
    return jax.tree.map(lambda *xs: np.stack(xs), *episodes)

  def make_retrieval_set(self, config, split):
    r = self._ranges[split]
    y = np.repeat(np.arange(r.start, r.stop), 4)
    rng = np.random.default_rng([config.seed, 8, r.start])
    return {'source_x': self._x(config, 'source', y, rng),
            'target_x': self._x(config, 'target', y, rng), 'y': y}


@pytest.fixture
def compilation_cache(compilation_cache_dir):
  """The session's persistent XLA cache (tests/conftest.py); kept for the modules importing it."""
  return compilation_cache_dir


@pytest.fixture
def step_calls(monkeypatch):
  """Records every call of a train step built by the loop (the first call compiles)."""
  calls = []
  make = train.train_step_lib.make_train_step

  def recording_make_train_step(*args, **kwargs):
    step = make(*args, **kwargs)
    return lambda *a: (calls.append(1), step(*a))[1]

  monkeypatch.setattr(train.train_step_lib, 'make_train_step', recording_make_train_step)
  return calls


def config(**overrides):
  return override(test_config.get_config(), **overrides)


def records(workdir):
  with open(os.path.join(workdir, train.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def steps(workdir):
  manager = checkpoint.make_manager(workdir, read_only=True)
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def assert_trees_close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw), a, b)
