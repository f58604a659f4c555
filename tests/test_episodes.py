"""Tests of the training episode pipeline: splits, task sampling, determinism, noise, config errors.

The tests inject small in-memory modalities (`Sources`, `episode_data`) whose inputs encode their
own example index, so that every gathered input can be traced back to its example and class.
Evaluation episodes and loading through TFDS builders: `test_eval_data.py`.
"""

import json

import jax
import numpy as np
import pytest

from meta_align_jax import data
from meta_align_jax import parallel
from meta_align_jax.data import splits as splits_lib

from episode_data import (SOURCE_SHAPE, TARGET_SHAPE, assert_trees_equal, draw_batches, index_of,
                          make_config, make_modality, sources, tasks_of)  # noqa: F401  (fixture)


# --- Splits -----------------------------------------------------------------------------------

def test_splits_disjoint_deterministic_and_saved(sources, tmp_path):
  config = make_config()
  splits = data.make_splits(config, str(tmp_path), sources=sources)
  assert [len(splits[s]) for s in ('train', 'val', 'test')] == [12, 4, 4]
  all_classes = splits['train'] + splits['val'] + splits['test']
  assert sorted(all_classes) == sorted(sources.source.class_names)   # disjoint and complete
  saved = json.loads((tmp_path / 'splits.json').read_text())
  assert {k: saved[k] for k in ('train', 'val', 'test')} == splits
  assert data.make_splits(config, str(tmp_path), sources=sources) == splits
  other = data.make_splits(make_config(seed=1), sources=sources)
  assert other != splits
  with pytest.raises(ValueError, match='different class split'):
    data.make_splits(make_config(seed=1), str(tmp_path), sources=sources)


def test_splits_join_classes_by_name(sources):
  src = make_modality(SOURCE_SHAPE, drop_class=3)
  renamed = make_modality(TARGET_SHAPE)
  renamed = data.ModalityData(renamed.x, renamed.label, ['other'] + renamed.class_names[1:],
                              renamed.example_id)
  splits = data.make_splits(make_config(), sources=data.Sources(src, renamed))
  joined = splits['train'] + splits['val'] + splits['test']
  assert 'class_00' not in joined and 'class_03' not in joined and len(joined) == 18


def test_split_fractions_checked(sources):
  with pytest.raises(ValueError, match='config.data.split_fractions'):
    data.make_splits(make_config(data__split_fractions=(0.5, 0.2, 0.2)), sources=sources)


# --- Training tasks ---------------------------------------------------------------------------

def test_source_task_invariants(sources):
  config = make_config()
  splits = data.make_splits(config, sources=sources)
  train = set(splits['train'])
  names = sources.source.class_names
  n, k, q = config.task.ways, config.task.shots, config.task.queries
  for batch in draw_batches(config, sources, 5):
    assert batch['source']['support']['x'].shape == (2, n * k) + SOURCE_SHAPE
    assert batch['source']['query']['x'].shape == (2, n * q) + SOURCE_SHAPE
    for task in tasks_of(batch['source']):
      s_idx, q_idx = index_of(task['support']['x']), index_of(task['query']['x'])
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
  config = make_config(data__target_train_shots=4)
  splits = data.make_splits(config, sources=sources)
  names = sources.source.class_names
  used_target = {}
  for batch in draw_batches(config, sources, 20):
    for task in tasks_of(batch['align']):
      src_cls = [names[c] for c in sources.source.label[index_of(task['source_x'])]]
      tgt_idx = index_of(task['target_x'])
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
  config = make_config(align__kind='strong', align__classes='all')
  names = sources.source.class_names
  seen = set()
  for batch in draw_batches(config, sources, 20):
    for task in tasks_of(batch['align']):
      s, t = index_of(task['source_x']), index_of(task['target_x'])
      np.testing.assert_array_equal(sources.source.example_id[s], sources.target.example_id[t])
      seen |= {names[c] for c in sources.source.label[s]}
  splits = data.make_splits(config, sources=sources)
  assert seen & set(splits['test'])                                    # 'all' reaches test classes


def test_target_tasks_use_target_subset(sources, tmp_path):
  config = make_config(task__meta_on=('source', 'target'))
  batches = draw_batches(config, sources, 10, workdir=str(tmp_path))
  subset = json.loads((tmp_path / 'target_train_subset.json').read_text())['example_ids']
  allowed = {i for ids in subset.values() for i in ids}
  splits = data.make_splits(config, sources=sources)
  assert set(subset) == set(splits['train'])
  assert all(len(ids) == 5 for ids in subset.values())
  for batch in batches:
    target = batch['target']
    assert target['support']['x'].shape == (2, 6) + TARGET_SHAPE
    for task in tasks_of(target):
      s, q = index_of(task['support']['x']), index_of(task['query']['x'])
      assert set(sources.target.example_id[np.r_[s, q]]) <= allowed
      assert not set(s) & set(q)
      np.testing.assert_array_equal(task['support']['y'], task['support']['clean_y'])


def test_target_train_classes_restrict_target_data(sources, tmp_path):
  config = make_config(task__meta_on=('source', 'target'), data__target_train_classes=4,
                   task__tasks_per_device=4)
  batches = draw_batches(config, sources, 15, workdir=str(tmp_path))
  train = data.make_splits(config, sources=sources)['train']
  saved = json.loads((tmp_path / 'target_train_subset.json').read_text())
  chosen = saved['target_train_classes']
  assert len(chosen) == 4 and set(chosen) <= set(train)
  assert chosen == splits_lib.target_train_classes(train, 4, config.seed)
  assert set(saved['example_ids']) == set(chosen)                    # the subset: those classes
  names = sources.source.class_names
  source_classes = set()
  for batch in batches:
    for task in tasks_of(batch['target']):
      for part in ('support', 'query'):
        cls = [names[c] for c in sources.target.label[index_of(task[part]['x'])]]
        assert set(cls) <= set(chosen)
        assert [train[l] for l in task[part]['label']] == cls       # labels index splits['train']
    for task in tasks_of(batch['align']):
      assert {names[c] for c in sources.target.label[index_of(task['target_x'])]} <= set(chosen)
      assert {names[c] for c in sources.source.label[index_of(task['source_x'])]} <= set(chosen)
    for task in tasks_of(batch['source']):
      source_classes |= {names[c] for c in sources.source.label[index_of(task['support']['x'])]}
  assert not source_classes <= set(chosen)                            # the source keeps them all
  # Resuming in the workdir is fine; another number of labelled classes is refused.
  draw_batches(config, sources, 1, workdir=str(tmp_path), start_step=3)
  with pytest.raises(ValueError, match='config.data.target_train_classes=5'):
    draw_batches(make_config(task__meta_on=('source', 'target'), data__target_train_classes=5),
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
  config = make_config(task__meta_on=('target',), align__enabled=False)
  draw_batches(config, sources, 1, workdir=str(tmp_path))
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
    data.make_train_iterator(make_config(**overrides), sources=sources)
  # The training loop's pre-compile check (train.check_splits) refuses the same values.
  from meta_align_jax import train   # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=match):
    config = make_config(**overrides)
    train.check_splits(config, data.make_splits(config, sources=sources))


def test_target_train_classes_unused_sides_need_no_ways(sources):
  # Source-only training without alignment uses no target data: 1 labelled class is allowed.
  config = make_config(data__target_train_classes=1, align__enabled=False)
  assert set(draw_batches(config, sources, 1)[0]) == {'source'}


def test_batch_parts_follow_config(sources):
  batch = draw_batches(make_config(task__meta_on=('target',), align__enabled=False), sources, 1)[0]
  assert set(batch) == {'target'}
  batch = draw_batches(make_config(), sources, 1)[0]
  assert set(batch) == {'source', 'align'}


def test_device_axis_layout(sources, monkeypatch):
  config = make_config(execution__parallel='pmap')
  assert parallel.num_batch_devices(config) == jax.local_device_count()
  # The caller (feeds.pipeline) hands the data package the execution's device axis.
  batch = draw_batches(config, sources, 1, devices=parallel.num_batch_devices(config))[0]
  d = jax.local_device_count()
  assert batch['source']['support']['x'].shape == (d, 2, 6) + SOURCE_SHAPE
  assert batch['align']['target_x'].shape == (d, 2, 6) + TARGET_SHAPE
  # With 4 devices, the same tasks are laid out as [4, T, ...].
  monkeypatch.setattr(jax, 'local_device_count', lambda *a, **k: 4)
  batch4 = draw_batches(config, sources, 1, devices=parallel.num_batch_devices(config))[0]
  assert batch4['source']['query']['y'].shape == (4, 2, 9)
  np.testing.assert_array_equal(batch4['source']['query']['x'].reshape((8, 9) + SOURCE_SHAPE)[:2],
                                draw_batches(make_config(), sources, 1)[0]['source']['query']['x'])


def test_multi_host_shards_and_layout_errors(sources, monkeypatch):
  host0 = draw_batches(make_config(execution__parallel='pmap'), sources, 1,
                   devices=jax.local_device_count())[0]
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  with pytest.raises(ValueError, match="config.execution.parallel='pmap'"):
    draw_batches(make_config(execution__parallel='jit'), sources, 1)
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  host1 = draw_batches(make_config(execution__parallel='pmap'), sources, 1,
                   devices=jax.local_device_count())[0]
  assert not np.array_equal(host0['source']['support']['x'], host1['source']['support']['x'])


# --- Determinism ------------------------------------------------------------------------------

def test_same_seed_same_batches_different_seed_different(sources):
  config = make_config(task__meta_on=('source', 'target'), data__target_noise=0.3)
  a = draw_batches(config, sources, 3)
  b = draw_batches(config, sources, 3)
  assert_trees_equal(a, b)
  c = draw_batches(make_config(seed=7, task__meta_on=('source', 'target'), data__target_noise=0.3),
               sources, 3)
  assert not np.array_equal(a[0]['source']['support']['x'], c[0]['source']['support']['x'])
  assert not np.array_equal(a[1]['source']['support']['x'], a[2]['source']['support']['x'])


def test_resume_is_exact(sources):
  config = make_config(task__meta_on=('source', 'target'), data__align_noise=0.2)
  from_zero = draw_batches(config, sources, 8)
  resumed = draw_batches(config, sources, 3, start_step=5)
  assert_trees_equal(from_zero[5:], resumed)


# --- Label noise ------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['symmetric', 'pairflip'])
def test_target_noise_rate(sources, kind):
  p = 0.3
  config = make_config(task__meta_on=('source', 'target'), data__target_noise=p, data__noise_kind=kind,
                   task__tasks_per_device=25, task__shots=1, task__queries=2)
  noisy, clean = [], []
  for batch in draw_batches(config, sources, 20):
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
  config = make_config(data__align_noise=p, task__tasks_per_device=25, align__pairs=12)
  rates = []
  for batch in draw_batches(config, sources, 10):
    a = batch['align']
    rates.append((a['y'] != a['target_clean_y']).mean())
    for task in tasks_of(a):
      src_cls = sources.source.label[index_of(task['source_x'])]
      tgt_cls = sources.target.label[index_of(task['target_x'])]
      # target_clean_y is the true class of the target example, in the task's local labels.
      local = {int(y): c for y, c in zip(task['y'], src_cls)}
      assert [local[int(y)] for y in task['target_clean_y']] == list(tgt_cls)
  assert abs(np.mean(rates) - p) < 0.05, np.mean(rates)


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
    data.make_train_iterator(make_config(**overrides), sources=sources)


@pytest.mark.parametrize('overrides, match', [
    (dict(eval__ways=5), r'config.eval.ways=5 exceeds the 4 classes of the test split'),
    (dict(eval__shots=5, eval__queries=8), r'config.eval.shots \+ config.eval.queries = 13'),
])
def test_eval_config_errors(sources, overrides, match):
  with pytest.raises(ValueError, match=match):
    data.make_eval_episodes(make_config(**overrides), 'test', sources=sources)
