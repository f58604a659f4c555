"""Tests of the episode pipeline: splits, task sampling, determinism, noise, evaluation episodes.

Most tests inject small in-memory modalities (`Sources`) whose inputs encode their own example
index, so that every gathered input can be traced back to its example and class. The loading tests
prepare a tiny TFDS builder defined here, registered under a test-only name, in a temporary dir.
"""

import itertools
import json
import os

import jax
import numpy as np
import pytest

from configs import default
from meta_align_jax import data
from meta_align_jax import parallel
from meta_align_jax.data import evaluation
from meta_align_jax.data import registry
from meta_align_jax.data import splits as splits_lib
from meta_align_jax.data.loading import clear_cache
from meta_align_jax.data.tfsetup import tfds

NUM_CLASSES = 20
PER_CLASS = 12
SOURCE_SHAPE = (4, 4, 3)
TARGET_SHAPE = (5, 2)


def _modality(shape, *, id_offset=0, drop_class=None):
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
  return data.Sources(source=_modality(SOURCE_SHAPE), target=_modality(TARGET_SHAPE))


def _config(**overrides):
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


def _batches(config, sources, n, **kw):
  return list(itertools.islice(data.make_train_iterator(config, sources=sources, **kw), n))


def _index(x, lead=1):
  """Example indices encoded in gathered inputs `[*lead_axes, *input_shape]` -> `[*lead_axes]`."""
  return x.reshape(x.shape[:lead] + (-1,))[..., 0].astype(np.int64)


def _tasks(batch_part):
  """Iterates over the tasks of a [T, ...] part of a batch."""
  leaves, treedef = jax.tree.flatten(batch_part)
  for t in range(leaves[0].shape[0]):
    yield jax.tree.unflatten(treedef, [l[t] for l in leaves])


# --- Splits -----------------------------------------------------------------------------------

def test_splits_disjoint_deterministic_and_saved(sources, tmp_path):
  config = _config()
  splits = data.make_splits(config, str(tmp_path), sources=sources)
  assert [len(splits[s]) for s in ('train', 'val', 'test')] == [12, 4, 4]
  all_classes = splits['train'] + splits['val'] + splits['test']
  assert sorted(all_classes) == sorted(sources.source.class_names)   # disjoint and complete
  saved = json.loads((tmp_path / 'splits.json').read_text())
  assert {k: saved[k] for k in ('train', 'val', 'test')} == splits
  assert data.make_splits(config, str(tmp_path), sources=sources) == splits
  other = data.make_splits(_config(seed=1), sources=sources)
  assert other != splits
  with pytest.raises(ValueError, match='different class split'):
    data.make_splits(_config(seed=1), str(tmp_path), sources=sources)


def test_splits_join_classes_by_name(sources):
  src = _modality(SOURCE_SHAPE, drop_class=3)
  renamed = _modality(TARGET_SHAPE)
  renamed = data.ModalityData(renamed.x, renamed.label, ['other'] + renamed.class_names[1:],
                              renamed.example_id)
  splits = data.make_splits(_config(), sources=data.Sources(src, renamed))
  joined = splits['train'] + splits['val'] + splits['test']
  assert 'class_00' not in joined and 'class_03' not in joined and len(joined) == 18


def test_split_fractions_checked(sources):
  with pytest.raises(ValueError, match='config.data.split_fractions'):
    data.make_splits(_config(data__split_fractions=(0.5, 0.2, 0.2)), sources=sources)


# --- Training tasks ---------------------------------------------------------------------------

def test_source_task_invariants(sources):
  config = _config()
  splits = data.make_splits(config, sources=sources)
  train = set(splits['train'])
  names = sources.source.class_names
  n, k, q = config.task.ways, config.task.shots, config.task.queries
  for batch in _batches(config, sources, 5):
    assert batch['source']['support']['x'].shape == (2, n * k) + SOURCE_SHAPE
    assert batch['source']['query']['x'].shape == (2, n * q) + SOURCE_SHAPE
    for task in _tasks(batch['source']):
      s_idx, q_idx = _index(task['support']['x']), _index(task['query']['x'])
      assert not set(s_idx) & set(q_idx)                              # support/query disjoint
      assert len(set(s_idx)) == n * k and len(set(q_idx)) == n * q
      s_cls = [names[c] for c in sources.source.label[s_idx]]
      q_cls = [names[c] for c in sources.source.label[q_idx]]
      assert set(s_cls) <= train and len(set(s_cls)) == n             # N distinct train classes
      np.testing.assert_array_equal(task['support']['y'], np.repeat(np.arange(n), k))
      np.testing.assert_array_equal(task['query']['y'], np.repeat(np.arange(n), q))
      for part, cls in (('support', s_cls), ('query', q_cls)):
        # One class per episode-local label, the same in support and query.
        by_y = {}
        for y, c in zip(task[part]['y'], cls):
          by_y.setdefault(int(y), set()).add(c)
        assert all(len(v) == 1 for v in by_y.values())
        assert [splits['train'][l] for l in task[part]['label']] == cls
      assert {y: s_cls[i] for i, y in enumerate(task['support']['y'])} == \
             {y: q_cls[i] for i, y in enumerate(task['query']['y'])}


def test_align_pairs_weak(sources):
  config = _config(data__target_train_shots=4)
  splits = data.make_splits(config, sources=sources)
  names = sources.source.class_names
  used_target = {}
  for batch in _batches(config, sources, 20):
    for task in _tasks(batch['align']):
      src_cls = [names[c] for c in sources.source.label[_index(task['source_x'])]]
      tgt_idx = _index(task['target_x'])
      tgt_cls = [names[c] for c in sources.target.label[tgt_idx]]
      assert src_cls == tgt_cls                                        # same class, no noise
      assert set(src_cls) <= set(splits['train'])                      # align.classes='train'
      np.testing.assert_array_equal(np.bincount(task['y']), [2, 2, 2]) # every class, P/ways each
      np.testing.assert_array_equal(task['y'], task['target_clean_y'])
      for c, i in zip(tgt_cls, tgt_idx):
        used_target.setdefault(c, set()).add(int(i))
  # Only the fixed low-resource subset of target examples is ever used in training.
  assert max(len(v) for v in used_target.values()) == 4


def test_align_classes_all_and_strong_pairs(sources):
  config = _config(align__kind='strong', align__classes='all')
  names = sources.source.class_names
  seen = set()
  for batch in _batches(config, sources, 20):
    for task in _tasks(batch['align']):
      s, t = _index(task['source_x']), _index(task['target_x'])
      np.testing.assert_array_equal(sources.source.example_id[s], sources.target.example_id[t])
      seen |= {names[c] for c in sources.source.label[s]}
  splits = data.make_splits(config, sources=sources)
  assert seen & set(splits['test'])                                    # 'all' reaches test classes


def test_target_tasks_use_target_subset(sources, tmp_path):
  config = _config(task__meta_on=('source', 'target'))
  batches = _batches(config, sources, 10, workdir=str(tmp_path))
  subset = json.loads((tmp_path / 'target_train_subset.json').read_text())['example_ids']
  allowed = {i for ids in subset.values() for i in ids}
  splits = data.make_splits(config, sources=sources)
  assert set(subset) == set(splits['train'])
  assert all(len(ids) == 5 for ids in subset.values())
  for batch in batches:
    target = batch['target']
    assert target['support']['x'].shape == (2, 6) + TARGET_SHAPE
    for task in _tasks(target):
      s, q = _index(task['support']['x']), _index(task['query']['x'])
      assert set(sources.target.example_id[np.r_[s, q]]) <= allowed
      assert not set(s) & set(q)
      np.testing.assert_array_equal(task['support']['y'], task['support']['clean_y'])


def test_target_train_classes_restrict_target_data(sources, tmp_path):
  config = _config(task__meta_on=('source', 'target'), data__target_train_classes=4,
                   task__tasks_per_device=4)
  batches = _batches(config, sources, 15, workdir=str(tmp_path))
  train = data.make_splits(config, sources=sources)['train']
  saved = json.loads((tmp_path / 'target_train_subset.json').read_text())
  chosen = saved['target_train_classes']
  assert len(chosen) == 4 and set(chosen) <= set(train)
  assert chosen == splits_lib.target_train_classes(train, 4, config.seed)
  assert set(saved['example_ids']) == set(chosen)                    # the subset: those classes
  names = sources.source.class_names
  source_classes = set()
  for batch in batches:
    for task in _tasks(batch['target']):
      for part in ('support', 'query'):
        cls = [names[c] for c in sources.target.label[_index(task[part]['x'])]]
        assert set(cls) <= set(chosen)
        assert [train[l] for l in task[part]['label']] == cls       # labels index splits['train']
    for task in _tasks(batch['align']):
      assert {names[c] for c in sources.target.label[_index(task['target_x'])]} <= set(chosen)
      assert {names[c] for c in sources.source.label[_index(task['source_x'])]} <= set(chosen)
    for task in _tasks(batch['source']):
      source_classes |= {names[c] for c in sources.source.label[_index(task['support']['x'])]}
  assert not source_classes <= set(chosen)                            # the source keeps them all
  # Resuming in the workdir is fine; another number of labelled classes is refused.
  _batches(config, sources, 1, workdir=str(tmp_path), start_step=3)
  with pytest.raises(ValueError, match='config.data.target_train_classes=5'):
    _batches(_config(task__meta_on=('source', 'target'), data__target_train_classes=5),
             sources, 1, workdir=str(tmp_path))


def test_target_train_classes_seeded_and_nested():
  train = [f'class_{i:02d}' for i in range(30)]
  five = splits_lib.target_train_classes(train, 5, seed=0)
  assert len(five) == 5 and five == sorted(five)
  assert five == splits_lib.target_train_classes(list(reversed(train)), 5, seed=0)
  assert set(five) <= set(splits_lib.target_train_classes(train, 20, seed=0))
  assert any(splits_lib.target_train_classes(train, 5, seed=s) != five for s in (1, 2, 3))
  assert splits_lib.target_train_classes(train, 0, seed=0) == train


def test_target_train_classes_default_is_all(sources, tmp_path):
  config = _config(task__meta_on=('target',), align__enabled=False)
  _batches(config, sources, 1, workdir=str(tmp_path))
  saved = json.loads((tmp_path / 'target_train_subset.json').read_text())
  assert saved['target_train_classes'] == data.make_splits(config, sources=sources)['train']


@pytest.mark.parametrize('overrides, match', [
    (dict(data__target_train_classes=-1), r'config.data.target_train_classes=-1 must be'),
    (dict(data__target_train_classes=13), r'config.data.target_train_classes=13 exceeds the 12'),
    (dict(data__target_train_classes=2, align__enabled=False, task__meta_on=('target',)),
     r'config.data.target_train_classes=2 is smaller than config.task.ways=3'),
    (dict(data__target_train_classes=2), r'is smaller than config.align.ways=3'),
])
def test_target_train_classes_errors(sources, overrides, match):
  with pytest.raises(ValueError, match=match):
    data.make_train_iterator(_config(**overrides), sources=sources)
  # The training loop's pre-compile check (train.check_splits) refuses the same values.
  from meta_align_jax import train   # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=match):
    config = _config(**overrides)
    train.check_splits(config, data.make_splits(config, sources=sources))


def test_target_train_classes_unused_sides_need_no_ways(sources):
  # Source-only training without alignment uses no target data: 1 labelled class is allowed.
  config = _config(data__target_train_classes=1, align__enabled=False)
  assert set(_batches(config, sources, 1)[0]) == {'source'}


def test_batch_parts_follow_config(sources):
  batch = _batches(_config(task__meta_on=('target',), align__enabled=False), sources, 1)[0]
  assert set(batch) == {'target'}
  batch = _batches(_config(), sources, 1)[0]
  assert set(batch) == {'source', 'align'}


def test_device_axis_layout(sources, monkeypatch):
  config = _config(execution__parallel='pmap')
  assert parallel.num_batch_devices(config) == jax.local_device_count()
  # The caller (feeds.pipeline) hands the data package the execution's device axis.
  batch = _batches(config, sources, 1, devices=parallel.num_batch_devices(config))[0]
  d = jax.local_device_count()
  assert batch['source']['support']['x'].shape == (d, 2, 6) + SOURCE_SHAPE
  assert batch['align']['target_x'].shape == (d, 2, 6) + TARGET_SHAPE
  # With 4 devices, the same tasks are laid out as [4, T, ...].
  monkeypatch.setattr(jax, 'local_device_count', lambda *a, **k: 4)
  batch4 = _batches(config, sources, 1, devices=parallel.num_batch_devices(config))[0]
  assert batch4['source']['query']['y'].shape == (4, 2, 9)
  np.testing.assert_array_equal(batch4['source']['query']['x'].reshape((8, 9) + SOURCE_SHAPE)[:2],
                                _batches(_config(), sources, 1)[0]['source']['query']['x'])


def test_multi_host_shards_and_layout_errors(sources, monkeypatch):
  host0 = _batches(_config(execution__parallel='pmap'), sources, 1,
                   devices=jax.local_device_count())[0]
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  with pytest.raises(ValueError, match="config.execution.parallel='pmap'"):
    _batches(_config(execution__parallel='jit'), sources, 1)
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  host1 = _batches(_config(execution__parallel='pmap'), sources, 1,
                   devices=jax.local_device_count())[0]
  assert not np.array_equal(host0['source']['support']['x'], host1['source']['support']['x'])


# --- Determinism ------------------------------------------------------------------------------

def _assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_same_seed_same_batches_different_seed_different(sources):
  config = _config(task__meta_on=('source', 'target'), data__target_noise=0.3)
  a = _batches(config, sources, 3)
  b = _batches(config, sources, 3)
  _assert_trees_equal(a, b)
  c = _batches(_config(seed=7, task__meta_on=('source', 'target'), data__target_noise=0.3),
               sources, 3)
  assert not np.array_equal(a[0]['source']['support']['x'], c[0]['source']['support']['x'])
  assert not np.array_equal(a[1]['source']['support']['x'], a[2]['source']['support']['x'])


def test_resume_is_exact(sources):
  config = _config(task__meta_on=('source', 'target'), data__align_noise=0.2)
  from_zero = _batches(config, sources, 8)
  resumed = _batches(config, sources, 3, start_step=5)
  _assert_trees_equal(from_zero[5:], resumed)


# --- Label noise ------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['symmetric', 'pairflip'])
def test_target_noise_rate(sources, kind):
  p = 0.3
  config = _config(task__meta_on=('source', 'target'), data__target_noise=p, data__noise_kind=kind,
                   task__tasks_per_device=25, task__shots=1, task__queries=2)
  noisy, clean = [], []
  for batch in _batches(config, sources, 20):
    noisy.append(batch['target']['support']['y'].ravel())
    clean.append(batch['target']['support']['clean_y'].ravel())
  noisy, clean = np.concatenate(noisy), np.concatenate(clean)
  flipped = noisy != clean
  rate = flipped.mean()                       # 1,500 labels: standard error ~0.012
  assert abs(rate - p) < 0.05, rate
  if kind == 'pairflip':
    np.testing.assert_array_equal(noisy[flipped], (clean[flipped] + 1) % 3)
  else:
    assert set(np.unique(noisy[flipped] - clean[flipped]) % 3) == {1, 2}


def test_align_noise_rate_and_true_class(sources):
  p = 0.25
  config = _config(data__align_noise=p, task__tasks_per_device=25, align__pairs=12)
  rates = []
  for batch in _batches(config, sources, 10):
    a = batch['align']
    rates.append((a['y'] != a['target_clean_y']).mean())
    for task in _tasks(a):
      src_cls = sources.source.label[_index(task['source_x'])]
      tgt_cls = sources.target.label[_index(task['target_x'])]
      # target_clean_y is the true class of the target example, in the task's local labels.
      local = {int(y): c for y, c in zip(task['y'], src_cls)}
      assert [local[int(y)] for y in task['target_clean_y']] == list(tgt_cls)
  assert abs(np.mean(rates) - p) < 0.05, np.mean(rates)


# --- Evaluation episodes ----------------------------------------------------------------------

def test_eval_episodes_fixed_saved_and_reloaded(sources, tmp_path, monkeypatch):
  config = _config(data__target_noise=0.2)
  split_classes = set(data.make_splits(config, sources=sources)['test'])
  episodes = data.make_eval_episodes(config, 'test', workdir=str(tmp_path), sources=sources)
  n, k, q = config.eval.ways, config.eval.shots, config.eval.queries
  assert episodes['support']['x'].shape == (40, n * k) + TARGET_SHAPE
  assert episodes['query']['x'].shape == (40, n * q) + TARGET_SHAPE
  assert (tmp_path / 'episodes_test.npz').exists()
  names = sources.target.class_names
  for e in range(40):
    s_idx, q_idx = _index(episodes['support']['x'][e]), _index(episodes['query']['x'][e])
    cls = {names[c] for c in sources.target.label[np.r_[s_idx, q_idx]]}
    assert cls <= split_classes and len(cls) == n and not set(s_idx) & set(q_idx)
    np.testing.assert_array_equal(episodes['support_clean_y'][e], np.repeat(np.arange(n), k))
  assert (episodes['support']['y'] != episodes['support_clean_y']).any()

  # Independent of the method and of the workdir; a shorter list is a prefix of a longer one.
  other_method = _config(data__target_noise=0.2, meta__learner='protonet', eval__method='proto')
  _assert_trees_equal(episodes, data.make_eval_episodes(other_method, 'test', sources=sources))
  short = data.make_eval_episodes(config, 'test', num_episodes=10, sources=sources)
  _assert_trees_equal(short, jax.tree.map(lambda v: v[:10], episodes))

  # A later call reloads the saved list instead of drawing it again.
  def no_draw(*a, **k):
    raise AssertionError('episodes were drawn again')
  monkeypatch.setattr(evaluation, '_draw', no_draw)
  _assert_trees_equal(
      episodes, data.make_eval_episodes(config, 'test', workdir=str(tmp_path), sources=sources))
  monkeypatch.undo()

  # Val episodes: their own classes and config.train.val_episodes of them.
  val = data.make_eval_episodes(config, 'val', workdir=str(tmp_path), sources=sources)
  assert val['query']['y'].shape == (20, n * q)
  val_classes = {names[c] for c in sources.target.label[_index(val['query']['x'], lead=2).ravel()]}
  assert val_classes <= set(data.make_splits(config, sources=sources)['val'])


def test_eval_episodes_file_checked_against_data(sources, tmp_path):
  config = _config()
  data.make_eval_episodes(config, 'test', workdir=str(tmp_path), sources=sources)
  shifted = data.Sources(sources.source, _modality(TARGET_SHAPE, id_offset=1000))
  with pytest.raises(ValueError, match='differ from the loaded target dataset'):
    data.make_eval_episodes(config, 'test', workdir=str(tmp_path), sources=shifted)


def test_retrieval_set(sources):
  config = _config()
  r = data.make_retrieval_set(config, 'test', sources=sources)
  assert r['source_x'].shape == (4 * PER_CLASS,) + SOURCE_SHAPE
  assert r['target_x'].shape == (4 * PER_CLASS,) + TARGET_SHAPE
  np.testing.assert_array_equal(sources.source.example_id[_index(r['source_x'])],
                                sources.target.example_id[_index(r['target_x'])])
  test_classes = data.make_splits(config, sources=sources)['test']
  names = sources.source.class_names
  assert [test_classes[y] for y in r['y']] == [names[c] for c in
                                              sources.source.label[_index(r['source_x'])]]


# --- Validation -------------------------------------------------------------------------------

@pytest.mark.parametrize('overrides, match', [
    (dict(task__ways=13), r'config.task.ways=13 exceeds the 12 classes'),
    (dict(task__shots=8, task__queries=5), r'config.task.shots \+ config.task.queries = 13'),
    (dict(align__pairs=7), r'config.align.pairs=7 must be divisible by config.align.ways=3'),
    (dict(align__ways=13, align__pairs=26), r'config.align.ways=13 exceeds the 12 classes'),
    (dict(task__meta_on=('source', 'target'), task__queries=4), r'target_train_shots=5'),
    (dict(align__kind='strong', data__target_dataset='other'), r"config.align.kind='strong'"),
    (dict(data__noise_kind='uniform'), r'config.data.noise_kind'),
    (dict(data__target_noise=1.5), r'config.data.target_noise'),
    (dict(task__meta_on=('text',)), r'config.task.meta_on'),
    (dict(source__input_shape=(8, 8, 3)), r'config.source.input_shape=\(8, 8, 3\)'),
])
def test_train_config_errors(sources, overrides, match):
  with pytest.raises(ValueError, match=match):
    data.make_train_iterator(_config(**overrides), sources=sources)


@pytest.mark.parametrize('overrides, match', [
    (dict(eval__ways=5), r'config.eval.ways=5 exceeds the 4 classes of the test split'),
    (dict(eval__shots=5, eval__queries=8), r'config.eval.shots \+ config.eval.queries = 13'),
])
def test_eval_config_errors(sources, overrides, match):
  with pytest.raises(ValueError, match=match):
    data.make_eval_episodes(_config(**overrides), 'test', sources=sources)


# --- Loading through a TFDS builder -----------------------------------------------------------

_TEST_NAMES = [f'thing_{i}' for i in range(6)]


class MetaAlignTestPairs(tfds.core.GeneratorBasedBuilder):
  """6 classes x 5 instances, each with a tiny grey image and an 'audio' feature."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description='Test data.',
        features=tfds.features.FeaturesDict({
            'label': tfds.features.ClassLabel(names=_TEST_NAMES),
            'example_id': tfds.features.Scalar(dtype=np.int64),
            'image': tfds.features.Tensor(shape=(6, 6, 1), dtype=np.uint8),
            'audio': tfds.features.Tensor(shape=(5, 2), dtype=np.float32),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for i in range(30):
      yield i, {'label': i % 6, 'example_id': i, 'image': np.full((6, 6, 1), 255 * (i % 2), np.uint8),
                'audio': np.full((5, 2), i, np.float32)}


class MetaAlignTestManual(tfds.core.GeneratorBasedBuilder):
  """A builder that reads a raw file from the manual dir."""
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Put raw.txt in the manual dir.'

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description='Test data.',
        features=tfds.features.FeaturesDict({
            'label': tfds.features.ClassLabel(names=['a']),
            'example_id': tfds.features.Scalar(dtype=np.int64),
            'audio': tfds.features.Tensor(shape=(5, 2), dtype=np.float32)}))

  def _split_generators(self, dl_manager):
    (dl_manager.manual_dir / 'raw.txt').read_text()
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    yield 0, {'label': 0, 'example_id': 0, 'audio': np.zeros((5, 2), np.float32)}


registry.register('meta_align_test_pairs', MetaAlignTestPairs)
registry.register('meta_align_test_manual', MetaAlignTestManual)


@pytest.fixture()
def tfds_config(tmp_path):
  c = _config()
  c.data.source_dataset = c.data.target_dataset = 'meta_align_test_pairs'
  c.data.source_feature, c.data.target_feature = 'image', 'audio'
  c.data.data_dir = str(tmp_path / 'tfds')
  c.source.input_shape = (4, 4, 3)
  c.data.split_fractions = (0.5, 0.25, 0.25)
  c.task.ways, c.task.shots, c.task.queries = 2, 1, 1
  c.align.ways, c.align.pairs, c.data.target_train_shots = 2, 4, 2
  yield c
  clear_cache()


def test_load_modality_from_builder(tfds_config):
  image = data.load_modality('meta_align_test_pairs', 'image', tfds_config)
  assert image.x.shape == (30, 4, 4, 3) and image.x.dtype == np.float32
  assert image.class_names == _TEST_NAMES
  odd = image.example_id % 2 == 1
  np.testing.assert_allclose(image.x[odd], 1.0)        # uint8 255 -> 1.0, resized, tiled to RGB
  np.testing.assert_allclose(image.x[~odd], 0.0)
  np.testing.assert_array_equal(image.label, image.example_id % 6)
  audio = data.load_modality('meta_align_test_pairs', 'audio', tfds_config)
  np.testing.assert_array_equal(audio.x[:, 0, 0], audio.example_id)
  assert os.path.isdir(os.path.join(tfds_config.data.data_dir, 'meta_align_test_pairs'))
  # The whole pipeline, loading through the registry.
  batch = next(data.make_train_iterator(tfds_config))
  assert batch['align']['source_x'].shape == (2, 4, 4, 4, 3)
  assert batch['align']['target_x'].shape == (2, 4, 5, 2)


def test_load_shape_mismatch_names_field(tfds_config):
  tfds_config.target.input_shape = (6, 2)
  with pytest.raises(ValueError, match=r'config.target.input_shape=\(6, 2\).*\(5, 2\)'):
    data.load_modality('meta_align_test_pairs', 'audio', tfds_config)
  tfds_config.source.input_shape = (4, 4, 2)
  with pytest.raises(ValueError, match=r'config.source.input_shape=\(4, 4, 2\)'):
    data.load_modality('meta_align_test_pairs', 'image', tfds_config)


def test_missing_data_errors(tfds_config, tmp_path):
  tfds_config.data.target_dataset = 'meta_align_test_manual'
  tfds_config.data.manual_dir = str(tmp_path / 'nowhere')
  with pytest.raises(ValueError, match=r'config.data.manual_dir.*nowhere.*Put raw.txt'):
    data.load_modality('meta_align_test_manual', 'audio', tfds_config)
  with pytest.raises(ValueError, match=r"'no_such_dataset' is not a known dataset"):
    data.load_modality('no_such_dataset', 'audio', tfds_config, side='target')
  with pytest.raises(ValueError, match=r"config.data.target_feature='speech' is not a feature"):
    data.load_modality('meta_align_test_pairs', 'speech', tfds_config, side='target')
