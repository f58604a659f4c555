"""Tests of the data package's evaluation side and loading: fixed evaluation episodes, the
retrieval set, and modalities loaded through a tiny TFDS builder (registered under a test-only
name, prepared in a temporary directory).
"""

import os

import jax
import numpy as np
import pytest

from meta_align_jax import data
from meta_align_jax.data import evaluation
from meta_align_jax.data import registry
from meta_align_jax.data.loading import clear_cache
from meta_align_jax.data.tfsetup import tfds
from episode_data import (PER_CLASS, SOURCE_SHAPE, TARGET_SHAPE, assert_trees_equal,  # noqa: F401
                          index_of, make_config, make_modality, sources)

# --- Evaluation episodes ----------------------------------------------------------------------

def test_eval_episodes_fixed_saved_and_reloaded(sources, tmp_path, monkeypatch):
  config = make_config(data__target_noise=0.2)
  split_classes = set(data.make_splits(config, sources=sources)['test'])
  episodes = data.make_eval_episodes(config, 'test', workdir=str(tmp_path), sources=sources)
  n, k, q = config.eval.ways, config.eval.shots, config.eval.queries
  assert episodes['support']['x'].shape == (40, n * k) + TARGET_SHAPE
  assert episodes['query']['x'].shape == (40, n * q) + TARGET_SHAPE
  assert (tmp_path / 'episodes_test.npz').exists()
  names = sources.target.class_names
  for e in range(40):
    s_idx, q_idx = index_of(episodes['support']['x'][e]), index_of(episodes['query']['x'][e])
    cls = {names[c] for c in sources.target.label[np.r_[s_idx, q_idx]]}
    assert cls <= split_classes and len(cls) == n and not set(s_idx) & set(q_idx)
    np.testing.assert_array_equal(episodes['support_clean_y'][e], np.repeat(np.arange(n), k))
  assert (episodes['support']['y'] != episodes['support_clean_y']).any()

  # Independent of the method and of the workdir; a shorter list is a prefix of a longer one.
  other_method = make_config(data__target_noise=0.2, meta__learner='protonet', eval__method='proto')
  assert_trees_equal(episodes, data.make_eval_episodes(other_method, 'test', sources=sources))
  short = data.make_eval_episodes(config, 'test', num_episodes=10, sources=sources)
  assert_trees_equal(short, jax.tree.map(lambda v: v[:10], episodes))

  # A later call reloads the saved list instead of drawing it again.
  def no_draw(*a, **k):
    raise AssertionError('episodes were drawn again')
  monkeypatch.setattr(evaluation, '_draw', no_draw)
  assert_trees_equal(
      episodes, data.make_eval_episodes(config, 'test', workdir=str(tmp_path), sources=sources))
  monkeypatch.undo()

  # Val episodes: their own classes and config.train.val_episodes of them.
  val = data.make_eval_episodes(config, 'val', workdir=str(tmp_path), sources=sources)
  assert val['query']['y'].shape == (20, n * q)
  val_classes = {names[c] for c in sources.target.label[index_of(val['query']['x'], lead=2).ravel()]}
  assert val_classes <= set(data.make_splits(config, sources=sources)['val'])


def test_eval_episodes_file_checked_against_data(sources, tmp_path):
  config = make_config()
  data.make_eval_episodes(config, 'test', workdir=str(tmp_path), sources=sources)
  shifted = data.Sources(sources.source, make_modality(TARGET_SHAPE, id_offset=1000))
  with pytest.raises(ValueError, match='differ from the loaded target dataset'):
    data.make_eval_episodes(config, 'test', workdir=str(tmp_path), sources=shifted)


def test_retrieval_set(sources):
  config = make_config()
  r = data.make_retrieval_set(config, 'test', sources=sources)
  assert r['source_x'].shape == (4 * PER_CLASS,) + SOURCE_SHAPE
  assert r['target_x'].shape == (4 * PER_CLASS,) + TARGET_SHAPE
  np.testing.assert_array_equal(sources.source.example_id[index_of(r['source_x'])],
                                sources.target.example_id[index_of(r['target_x'])])
  test_classes = data.make_splits(config, sources=sources)['test']
  names = sources.source.class_names
  assert [test_classes[y] for y in r['y']] == [names[c] for c in
                                              sources.source.label[index_of(r['source_x'])]]


# --- Loading through a TFDS builder -----------------------------------------------------------

_TEST_NAMES = [f'thing_{i}' for i in range(6)]


@registry.register('meta_align_test_pairs')
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


@registry.register('meta_align_test_manual')
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


@pytest.fixture()
def tfds_config(tmp_path):
  c = make_config()
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


def test_rotation_classes_are_loaded_once(tfds_config, monkeypatch):
  tfds_config.augment.rotation_classes = True
  calls = []
  rotate = data.augment.rotation_classes
  monkeypatch.setattr(data.augment, 'rotation_classes', lambda d: calls.append(1) or rotate(d))
  first = data.load_sources(tfds_config)
  again = data.load_sources(tfds_config)
  assert again.source is first.source and again.target is first.target
  assert again.source.x is first.source.x
  assert len(calls) == 1                     # the image side only, once
  plain = data.load_modality('meta_align_test_pairs', 'image', tfds_config)
  assert first.source.num_examples == 4 * plain.num_examples
  np.testing.assert_array_equal(first.source.x[1::4], np.rot90(plain.x, 1, axes=(1, 2)))
  assert first.target is data.load_modality('meta_align_test_pairs', 'audio', tfds_config)
