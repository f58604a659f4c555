"""The low-resource protocol: labelled set, strong pairs and checkpoint selection read no target
label (target labels that raise when read), select/patience checks, both protocols reported."""

import dataclasses

import jax
import numpy as np
import pytest

from meta_align_jax import data, lowres, selection, validation
from meta_align_jax.data import episodes, splits as splits_lib
from meta_align_jax.data import selection as data_selection
from tests.episode_data import index_of as episodes_data_index
from tests.episode_data import make_config, sources  # noqa: F401  (fixture)


class Withheld:
  """Target labels the protocol withholds: any read raises."""

  def __init__(self, n):
    self.shape = (n,)

  def _raise(self, *args, **kwargs):
    raise AssertionError('a target label was read')

  __getitem__ = __array__ = __iter__ = __len__ = __eq__ = __ne__ = _raise
  min = max = tolist = astype = _raise


def _withheld(sources):
  target = dataclasses.replace(sources.target)
  object.__setattr__(target, 'label', Withheld(target.label.shape[0]))
  return data.Sources(source=sources.source, target=target)


def _lowres_config(**overrides):
  kw = {'lowres__enabled': True, 'lowres__labelled_classes': 3, 'lowres__labelled_shots': 2,
        'train__select': 'align_val', **overrides}
  c = make_config(**kw)
  return lowres.apply(c)


def test_apply_sets_the_labelled_set_and_pairs_and_check_applied_refuses_edits():
  c = _lowres_config()
  assert (c.data.target_train_classes, c.data.target_train_shots) == (3, 2)
  assert c.align.enabled and c.align.kind == 'strong' and c.align.classes == 'train'
  validation.check_protocol(c)
  c.data.target_train_shots = 20
  with pytest.raises(ValueError, match='data.target_train_shots=20.*lowres.apply'):
    lowres.check_applied(c)
  none = lowres.apply(make_config(lowres__enabled=True, lowres__pairs='none',
                                  train__select='final'))
  assert not none.align.enabled
  assert make_config().data.target_train_shots == 5   # protocol off: fields untouched


def test_target_val_selection_is_refused_under_the_protocol_except_for_the_oracle():
  c = _lowres_config(train__select='target_val')
  with pytest.raises(ValueError, match="select='target_val' reads target meta-val labels"):
    validation.check_protocol(c)
  c.lowres.oracle = True
  validation.check_protocol(c)
  with pytest.raises(ValueError, match='config.train.patience=2 needs'):
    validation.check_protocol(_lowres_config(train__select='final', train__patience=2))


def test_strong_pairs_cover_all_meta_train_classes_without_reading_target_labels(sources):
  c = _lowres_config()
  splits = splits_lib.make_splits(c, sources=sources)
  guarded = _withheld(sources)
  pools = episodes.build_train_pools(c, guarded, splits)   # raises if a target label is read
  assert pools.align.pairs.names == tuple(splits['train'])   # every meta-train class
  src, tgt = np.asarray(pools.align.pair_source), np.asarray(pools.align.pair_target)
  np.testing.assert_array_equal(sources.source.example_id[src], sources.target.example_id[tgt])
  # The pair's class (table row) is its source class; the unseen target label agrees here.
  members, counts = np.asarray(pools.align.pairs.members), np.asarray(pools.align.pairs.counts)
  for row, name in enumerate(pools.align.pairs.names):
    pairs = members[row, :counts[row]]
    assert {sources.source.class_names[l] for l in sources.source.label[src[pairs]]} == {name}
    assert len(pairs) == 12   # every instance (pair_instances=0)
  assert pools.target_subset == {}   # no labelled target data is needed by meta_align's pools
  # The real pipeline (its class split asks which class names the target has, so clean labels).
  batch = next(data.make_train_iterator(c, sources=sources))
  s_id, t_id = (episodes_data_index(batch['align'][k], lead=2) for k in ('source_x', 'target_x'))
  np.testing.assert_array_equal(sources.source.example_id[s_id], sources.target.example_id[t_id])


def test_weak_pairs_come_from_the_labelled_classes_only(sources):
  c = lowres.apply(make_config(lowres__enabled=True, lowres__labelled_classes=3,
                               lowres__labelled_shots=2, lowres__pairs='weak',
                               train__select='source_val'))
  splits = splits_lib.make_splits(c, sources=sources)
  pools = episodes.build_train_pools(c, sources, splits)
  labelled = splits_lib.target_train_classes(splits['train'], 3, c.seed)
  assert pools.align.target.names == tuple(labelled)
  assert sorted(pools.target_subset) == labelled
  assert all(len(v) == 2 for v in pools.target_subset.values())


@pytest.mark.parametrize('select', ['source_val', 'align_val'])
def test_selection_data_and_selectors_read_no_target_label(sources, select):
  from tests.tiny import tiny_config   # pylint: disable=g-import-not-at-top
  from meta_align_jax.models import registry   # pylint: disable=g-import-not-at-top
  from meta_align_jax import train_step   # pylint: disable=g-import-not-at-top
  c = _lowres_config(train__select=select, train__val_episodes=6)
  splits = splits_lib.make_splits(c, sources=sources)
  guarded = _withheld(sources)
  idx = data_selection.selection_indices(c, guarded, splits=splits)
  if select == 'align_val':
    s, t = idx['align_val.source_idx'], idx['align_val.target_idx']
    np.testing.assert_array_equal(sources.source.example_id[s], sources.target.example_id[t])
    assert {sources.source.class_names[l] for l in sources.source.label[s]} == set(splits['val'])
  else:
    assert idx['source_val.support_idx'].shape == (6, 3)
    # The episodes' classes are meta-val source classes; labels episode-local, class-major.
    val = {sources.source.class_names.index(n) for n in splits['val']}
    assert set(sources.source.label[idx['source_val.query_idx']].ravel()) <= val
    np.testing.assert_array_equal(idx['source_val.support_y'][0], [0, 1, 2])

  # The selector on tiny encoders, from the guarded selection data.
  model_config = tiny_config(**{'train.select': select, 'train.val_episodes': 6,
                                'eval.method': 'proto'})
  rng = np.random.default_rng(0)
  sel = data_selection.gather_selection(
      idx, rng.normal(size=(len(sources.source.x), 8, 8, 3)).astype(np.float32),
      rng.normal(size=(len(sources.target.x), 6, 5)).astype(np.float32))

  class Data:
    def make_selection_data(self, config):
      return sel

  model = registry.build_model(model_config)
  state = train_step.init_train_state(model_config, model, jax.random.key(0))
  scores = selection.make_selector(model_config, model, Data())(state.params)
  assert np.isfinite(scores['selection_score'])
  if select == 'align_val':   # -InfoNCE of the same embeddings, computed directly
    z_s = np.asarray(model.embed(state.params, sel['align_val']['source_x'], side='source'))
    z_t = np.asarray(model.embed(state.params, sel['align_val']['target_x'], side='target'))
    np.testing.assert_allclose(-scores['selection_score'],
                               selection.pair_infonce(z_s, z_t, 0.1), rtol=1e-4)
  else:
    assert 0.0 <= scores['selection_score'] <= 1.0


def test_pair_infonce_is_low_for_matched_and_log_n_for_uninformative_embeddings():
  z = np.eye(8, dtype=np.float32)
  assert selection.pair_infonce(z, z, 0.01) < 1e-3
  np.testing.assert_allclose(selection.pair_infonce(np.ones((8, 4)), np.ones((8, 4)), 0.1),
                             np.log(8), rtol=1e-5)


def test_history_counts_validations_since_the_best_and_survives_a_restart(tmp_path):
  h = selection.History(str(tmp_path), 0)
  for step, score in [(10, .5), (20, .7), (30, .6), (40, .7)]:
    h.add(step, score)
  assert h.since_best() == 2 and h.should_stop(2) and not h.should_stop(3)
  assert not h.should_stop(0)
  resumed = selection.History(str(tmp_path), 30)   # resumed from step 30: the 40 entry is dropped
  assert [e['step'] for e in resumed.entries] == [10, 20, 30] and resumed.since_best() == 1


def test_pseudo_labels_label_every_paired_clip_with_its_source_class(sources):
  c = lowres.apply(make_config(lowres__enabled=True, lowres__labelled_classes=3,
                               lowres__labelled_shots=2, lowres__pairs='none',
                               lowres__pseudo_labels=True, lowres__pair_instances=6,
                               train__select='final', task__meta_on=('target',)))
  splits = splits_lib.make_splits(c, sources=sources)
  pools = episodes.build_train_pools(c, sources, splits)
  table = pools.target_tasks
  assert table.names == tuple(splits['train'])
  labelled = set(splits_lib.target_train_classes(splits['train'], 3, c.seed))
  members, counts = np.asarray(table.members), np.asarray(table.counts)
  for row, name in enumerate(table.names):
    idx = members[row, :counts[row]]
    # 6 pair instances per class, plus the 2 labelled examples of a labelled class (which may
    # coincide with a paired clip).
    assert 6 <= counts[row] <= (8 if name in labelled else 6)
    assert {sources.target.class_names[l] for l in sources.target.label[idx]} == {name}
  with pytest.raises(ValueError, match="pseudo_labels=True .* add 'target'"):
    lowres.check(make_config(lowres__enabled=True, lowres__pseudo_labels=True))


def test_pseudo_labels_and_strong_pairs_share_one_pairing(sources, monkeypatch):
  c = lowres.apply(make_config(lowres__enabled=True, lowres__labelled_classes=3,
                               lowres__labelled_shots=2, lowres__pairs='strong',
                               lowres__pseudo_labels=True, lowres__pair_instances=6,
                               train__select='final', task__meta_on=('target',)))
  splits = splits_lib.make_splits(c, sources=sources)
  calls = []
  pair = episodes.lowres_data.unlabelled_pairs
  monkeypatch.setattr(episodes.lowres_data, 'unlabelled_pairs',
                      lambda *a, **k: calls.append(k['what']) or pair(*a, **k))
  pools = episodes.build_train_pools(c, sources, splits)
  assert calls == ['lowres.pseudo_labels']
  src, tgt, groups = pair(sources.source.label, sources.source.example_id,
                          sources.source.class_names, sorted(splits['train']),
                          sources.target.example_id, seed=c.seed, per_class=6)
  np.testing.assert_array_equal(np.asarray(pools.align.pair_source), src)
  np.testing.assert_array_equal(np.asarray(pools.align.pair_target), tgt)
  assert pools.align.pairs.names == tuple(sorted(splits['train']))
