"""Training inputs gathered on the device (`config.data.gather='device'`) == gathered by tf.data.

The index pipeline plus `meta_align_jax.feeds.device_gather` must give the host pipeline's batches
bit for bit, in every batch layout, and a training run must end with the same parameters either
way.
"""

import itertools

import jax
import numpy as np
import pytest

from configs import default
from meta_align_jax import data, train, validation
from meta_align_jax.feeds import gather_mode, pipeline
from tiny import override, tiny_config

SOURCE_SHAPE, TARGET_SHAPE = (8, 8, 3), (6, 5)
NUM_CLASSES, PER_CLASS = 16, 10


def _sources(seed=0):
  rng = np.random.default_rng(seed)
  n = NUM_CLASSES * PER_CLASS
  label = np.repeat(np.arange(NUM_CLASSES), PER_CLASS).astype(np.int32)
  names = [f'class_{i:02d}' for i in range(NUM_CLASSES)]
  def modality(shape):
    return data.ModalityData(x=rng.random((n,) + shape, dtype=np.float32), label=label,
                             class_names=names, example_id=np.arange(n))
  return data.Sources(source=modality(SOURCE_SHAPE), target=modality(TARGET_SHAPE))


@pytest.fixture(scope='module')
def sources():
  return _sources()


def _config(**overrides):
  c = tiny_config(**{'data.source_dataset': 'in_memory', 'data.target_dataset': 'in_memory',
                     'data.target_train_shots': 5, 'eval.num_episodes': 20,
                     'train.val_episodes': 10})
  return override(c, **overrides)


def _batches(config, sources, n, **kw):
  """The training loop's batches: the data package's pipeline fed as config.data.gather says."""
  it = pipeline.Pipeline(sources).make_train_iterator(config, **kw)
  return list(itertools.islice(it, n))


@pytest.mark.parametrize('overrides', [
    {},
    {'task.meta_on': ('source', 'target'), 'data.target_noise': 0.4, 'data.align_noise': 0.3},
    {'align.kind': 'strong', 'align.loss': 'infonce'},
    {'task.meta_on': ('target',), 'align.enabled': False},
    {'execution.parallel': 'pmap'},
], ids=['weak_pairs', 'noisy_target_tasks', 'strong_pairs', 'target_only', 'pmap'])
def test_device_gather_equals_host_gather(sources, overrides):
  host = _batches(_config(**overrides, **{'data.gather': 'host'}), sources, 3)
  device = _batches(_config(**overrides, **{'data.gather': 'device'}), sources, 3)
  for h, d in zip(host, device):
    assert jax.tree.structure(h) == jax.tree.structure(d)
    assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(d))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)), h, d)
    assert all(a.dtype == b.dtype for a, b in zip(jax.tree.leaves(h), jax.tree.leaves(d)))
  # Resume: an index pipeline started at step 2 gathers the batch of step 2.
  resumed = _batches(_config(**overrides, **{'data.gather': 'device'}), sources, 1, start_step=2)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               device[2], resumed[0])


def test_index_batches_are_small(sources):
  config = _config()
  index = next(data.episodes.train_dataset(config, sources=sources,
                                           index_only=True).as_numpy_iterator())
  assert set(index['source']['support']) == {'idx', 'y', 'label'}
  assert set(index['align']) == {'source_idx', 'target_idx', 'y', 'target_clean_y'}
  host = _batches(_config(**{'data.gather': 'host'}), sources, 1)[0]
  nbytes = lambda tree: sum(np.asarray(v).nbytes for v in jax.tree.leaves(tree))
  assert nbytes(index) * 10 < nbytes(host)


def test_auto_resolution_and_errors():
  c = default.get_config()
  assert c.data.gather == 'auto'
  assert gather_mode.resolve(c, 2**30, backend='gpu') == 'device'
  assert gather_mode.resolve(c, 5 * 2**30, backend='gpu') == 'host'   # over the 4 GiB default
  assert gather_mode.resolve(c, 1, backend='cpu') == 'host'
  c.data.device_gather_max_gib = 8
  assert gather_mode.resolve(c, 5 * 2**30, backend='tpu') == 'device'
  c.data.gather = 'device'
  assert gather_mode.resolve(c, 10 * 2**30, backend='cpu') == 'device'
  c.data.gather = 'gpu'
  with pytest.raises(ValueError, match=r"config.data.gather='gpu'"):
    validation.check_config(c)
  c.data.gather, c.data.device_gather_max_gib = 'auto', -1
  with pytest.raises(ValueError, match=r'config.data.device_gather_max_gib=-1'):
    validation.check_config(c)


def test_training_run_same_with_device_gather(sources, tmp_path):
  params = {}
  for mode in ('host', 'device'):
    config = _config(**{'data.gather': mode, 'train.num_steps': 3, 'train.eval_every': 0,
                        'train.checkpoint_every': 3, 'train.log_every': 1})
    workdir = str(tmp_path / mode)
    assert train.train(config, workdir, data=pipeline.Pipeline(sources)).finished
    params[mode] = train.checkpoint_lib.restore(workdir)[2].params
  jax.tree.map(np.testing.assert_array_equal, params['host'], params['device'])
