"""Single-modality few-shot learning (`config.task.modalities=('target',)`): one encoder, one
dataset, no alignment; the same learners, loop, checkpoints and evaluation."""

import os
import re

import jax
import numpy as np
import pytest

from configs import omniglot_5way, omniglot_20way
from meta_align_jax import build_model, data, init_train_state, restore, train
from meta_align_jax.data import loading
from meta_align_jax.feeds.pipeline import Pipeline
from tests.fakes import compilation_cache  # noqa: F401  pylint: disable=unused-import
from tests.tiny import override

SHAPE = (12, 12, 1)
NUM_CLASSES, PER_CLASS = 16, 6


def _config(**overrides):
  c = omniglot_5way.get_config()
  c.target.input_shape = SHAPE
  c.data.target_dataset = c.data.source_dataset = 'in_memory'
  c.data.target_train_shots = PER_CLASS
  c.data.split_fractions = (0.5, 0.25, 0.25)   # 8 / 4 / 4 classes
  c.augment.rotation_classes = False
  c.model.width, c.model.z_dim = 8, 16
  c.task.ways, c.task.shots, c.task.queries, c.task.tasks_per_device = 3, 1, 2, 2
  c.eval.ways, c.eval.shots, c.eval.queries = 3, 1, 3
  c.eval.num_episodes, c.eval.batch_episodes = 30, 10
  c.train.num_steps, c.train.log_every = 30, 10
  c.train.checkpoint_every = c.train.eval_every = 30
  c.train.val_episodes = 10
  c.optim.lr = 3e-3
  c.execution.parallel, c.execution.task_batching = 'jit', 'map'
  return override(c, **overrides)


def _images():
  """An easy made-up problem: each class is a bright square at its own place, plus noise."""
  rng = np.random.default_rng(0)
  label = np.repeat(np.arange(NUM_CLASSES), PER_CLASS).astype(np.int32)
  x = 0.3 * rng.random((label.size,) + SHAPE, dtype=np.float32)
  for i, c in enumerate(label):
    r, col = divmod(int(c), 4)
    x[i, 3 * r:3 * r + 3, 3 * col:3 * col + 3] += 1.0
  return data.ModalityData(x=x, label=label, class_names=[f'c{i:02d}' for i in range(NUM_CLASSES)],
                           example_id=np.arange(label.size, dtype=np.int64))


def test_parameters_have_no_source_group():
  c = _config()
  model = build_model(c)
  params = init_train_state(c, model, jax.random.key(0)).params
  assert sorted(params) == ['head', 'target']
  assert model.source is None
  both = build_model(override(_config(), **{'task.modalities': ('source', 'target')}))
  # The target tower and head start from the same values with or without a source encoder.
  jax.tree.map(np.testing.assert_array_equal, params['target'], both.init(
      jax.random.key(0))['target'])
  with pytest.raises(ValueError, match="no source encoder.*side='target'"):
    model.embed(params, np.zeros((1,) + SHAPE, np.float32), 'source')


def test_train_and_evaluate_end_to_end(tmp_path):
  target = _images()
  sources = data.Sources(source=target, target=target)
  c = _config()
  run = train.train_and_evaluate(c, str(tmp_path), data=Pipeline(sources))
  results = run.eval_results
  acc = results['accuracy_mean']
  assert acc > 0.8, results          # 3-way: chance is 1/3
  assert 'retrieval' not in str(sorted(results))
  config, model, state = restore(str(tmp_path))
  assert tuple(config.task.modalities) == ('target',)
  assert sorted(state.params) == ['head', 'target']
  assert int(state.step) == c.train.num_steps
  assert results['source_modality'] is None
  # The README's snippet that evaluates a restored run on one's own episodes runs as written.
  with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'README.md')) as f:
    snippet = re.findall(r'```python\n(.*?)```', f.read(), re.S)[1]
  assert 'meta_align_jax.restore(' in snippet and "side='target'" in snippet
  exec(snippet.replace("'/tmp/tiny'", repr(str(tmp_path))), {})  # pylint: disable=exec-used


@pytest.mark.parametrize('field,value,match', [
    ('align.enabled', True, 'config.align.enabled=True'),
    ('task.meta_on', ('source', 'target'), 'config.task.meta_on'),
    ('eval.retrieval', True, 'config.eval.retrieval=True'),
    ('model.shared_encoder', True, 'config.model.shared_encoder=True'),
    ('task.modalities', ('source',), 'config.task.modalities'),
])
def test_contradictory_settings_refused_before_compiling(field, value, match):
  c = _config(**{field: value})
  with pytest.raises(ValueError, match=match.replace('.', r'\.').replace('(', r'\(')):
    train.train(c, '/nonexistent/never/written')


def test_only_the_target_dataset_is_loaded(monkeypatch):
  loaded = []
  monkeypatch.setattr(loading, 'load_modality',
                      lambda dataset, feature, config, side=None, rotate=False:
                      loaded.append(side) or _images())
  c = _config(**{'data.source_dataset': 'not_a_dataset'})
  sources = loading.load_sources(c)
  assert loaded == ['target'] and sources.source is sources.target


def test_omniglot_configs_are_single_modality():
  for module, ways in ((omniglot_20way, 20), (omniglot_5way, 5)):
    c = module.get_config()
    assert tuple(c.task.modalities) == ('target',) and not c.align.enabled
    assert (c.eval.ways, c.eval.shots, c.data.target_dataset) == (ways, 1, 'omniglot')
    params = jax.eval_shape(build_model(c).init, jax.random.key(0))
    assert sorted(params) == ['head', 'target']


def test_host_and_device_feeds_agree_with_one_array():
  target = _images()
  sources = data.Sources(source=target, target=target)
  batches = {}
  for mode in ('host', 'device'):
    it = Pipeline(sources).make_train_iterator(_config(**{'data.gather': mode}), start_step=5)
    batches[mode] = jax.tree.map(np.asarray, next(it))
  assert sorted(batches['host']) == ['target']
  jax.tree.map(np.testing.assert_array_equal, batches['host'], batches['device'])
