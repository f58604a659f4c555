"""Exported data bundles: a run without TensorFlow sees the data pipeline's own batches.

`export_bundle` runs the tf.data pipeline; `ExportedData` serves the bundle with numpy and JAX.
"""

import itertools
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from meta_align_jax import data, io, train
from meta_align_jax.feeds import exported
from meta_align_jax.data import convert
from meta_align_jax.data import export as export_lib
from tiny import override, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES, PER_CLASS = 16, 10
SOURCE_SHAPE, TARGET_SHAPE = (8, 8, 3), (6, 5)


def _raw(image_size=5):
  """Raw examples as a builder stores them: uint8 images of another size, float audio."""
  rng = np.random.default_rng(0)
  n = NUM_CLASSES * PER_CLASS
  label = np.repeat(np.arange(NUM_CLASSES), PER_CLASS).astype(np.int32)
  names = [f'class_{i:02d}' for i in range(NUM_CLASSES)]
  image = rng.integers(0, 256, size=(n, image_size, image_size, 3), dtype=np.uint8)
  audio = rng.normal(size=(n,) + TARGET_SHAPE).astype(np.float32)
  return data.Sources(
      source=data.ModalityData(x=image, label=label, class_names=names, example_id=np.arange(n)),
      target=data.ModalityData(x=audio, label=label, class_names=names, example_id=np.arange(n)))


BASE = {'data.source_dataset': 'in_memory', 'data.target_dataset': 'in_memory',
        'data.target_train_shots': 5, 'eval.num_episodes': 12, 'train.val_episodes': 6,
        'train.num_steps': 4, 'eval.batch_episodes': 4}
BUNDLE = {'task.meta_on': ('source', 'target'), 'data.target_noise': 0.2}   # the bundle's config


def _config(**overrides):
  return override(tiny_config(**BASE), **overrides)


def _converted(config, raw):
  return export_lib._converted(config, raw)   # pylint: disable=protected-access


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('bundle') / 'b.npz')
  config = _config(**BUNDLE)
  export_lib.export_bundle(config, path, steps=5, raw_sources=_raw())
  return config, path


@pytest.mark.parametrize('raw_shape,channels', [((4, 4, 3), 3), ((12, 12), 3), ((8, 8, 3), 1),
                                                 ((13, 7, 1), 3)])
def test_to_input_matches_tensorflow(raw_shape, channels):
  rng = np.random.default_rng(1)
  raw = rng.integers(0, 256, size=(7,) + raw_shape, dtype=np.uint8)
  shape = (8, 8, channels)
  want = convert.to_input(raw, modality='image', input_shape=shape, side='source', what='t')
  got = exported.to_input(raw, modality='image', input_shape=shape, chunk=3)
  assert got.shape == want.shape and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_bundle_batches_episodes_and_retrieval_equal_the_pipeline(bundle):
  config, path = bundle
  sources = _converted(config, _raw())
  bundle_data = exported.ExportedData(path)
  want = list(itertools.islice(data.make_train_iterator(config, sources=sources), 5))
  got = list(bundle_data.make_train_iterator(config))
  assert len(got) == 5
  for w, g in zip(want, got):
    assert jax.tree.structure(w) == jax.tree.structure(g)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(b), a, atol=2e-6), w, g)
  np.testing.assert_array_equal(got[3]['target']['support']['y'], want[3]['target']['support']['y'])
  resumed = next(bundle_data.make_train_iterator(config, start_step=3))
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               got[3], resumed)
  for split, num in (('test', 12), ('val', 6)):
    w = data.make_eval_episodes(config, split, num, sources=sources)
    g = bundle_data.make_eval_episodes(config, split, num)
    jax.tree.map(np.testing.assert_array_equal, w, g)   # audio: no conversion, exact
  w = data.make_retrieval_set(config, 'test', sources=sources)
  g = bundle_data.make_retrieval_set(config, 'test')
  np.testing.assert_allclose(g['source_x'], w['source_x'], atol=2e-6)
  np.testing.assert_array_equal(g['target_x'], w['target_x'])
  np.testing.assert_array_equal(g['y'], w['y'])
  assert bundle_data.make_splits(config) == data.make_splits(config, sources=sources)


def test_bundle_refuses_other_settings(bundle, tmp_path):
  config, path = bundle
  bundle_data = exported.ExportedData(path)
  other = _config(**BUNDLE, **{'task.shots': 2, 'seed': 3})
  with pytest.raises(ValueError, match=r'config.seed=3 \(bundle: 0\).*config.task.shots=2'):
    bundle_data.make_splits(other)
  longer = _config(**BUNDLE, **{'train.num_steps': 6})
  with pytest.raises(ValueError, match=r'config.train.num_steps=6 \(the bundle holds 5 steps\)'):
    bundle_data.make_train_iterator(longer)
  with pytest.raises(ValueError, match=r'20 .test. episodes asked for'):
    bundle_data.make_eval_episodes(config, 'test', 20)
  with pytest.raises(FileNotFoundError, match=r'launch/export_data.py'):
    exported.ExportedData(str(tmp_path / 'missing.npz'))
  # A workdir trained on another split is refused, and nothing in it is overwritten.
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / io.SPLITS_FILE).write_text('{"train": ["x"]}')
  with pytest.raises(ValueError, match=r'splits.json holds another class split'):
    bundle_data.make_splits(config, str(workdir))
  assert (workdir / io.SPLITS_FILE).read_text() == '{"train": ["x"]}'


def test_bundles_share_one_examples_file(tmp_path):
  raw = _raw()
  examples = str(tmp_path / 'examples.npz')
  paths = {}
  for name, overrides in (('meta_align', {}), ('no_align', {'align.enabled': False})):
    paths[name] = str(tmp_path / f'{name}.npz')
    export_lib.export_bundle(_config(**overrides), paths[name], steps=4, raw_sources=raw,
                             examples_path=examples)
  inline = str(tmp_path / 'inline.npz')
  export_lib.export_bundle(_config(), inline, steps=4, raw_sources=raw)
  assert os.path.getsize(paths['meta_align']) * 5 < os.path.getsize(inline)
  a = list(exported.ExportedData(paths['meta_align']).make_train_iterator(_config()))
  b = list(exported.ExportedData(inline).make_train_iterator(_config()))
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)
  assert 'align' not in next(exported.ExportedData(paths['no_align']).make_train_iterator(
      _config(**{'align.enabled': False})))
  other = data.Sources(source=raw.source, target=_raw(image_size=4).source)
  with pytest.raises(ValueError, match=r'--examples .*examples.npz holds other examples'):
    export_lib.export_bundle(_config(**{'target.modality': 'image', 'target.encoder': 'conv4',
                                        'target.input_shape': (8, 8, 3)}),
                             str(tmp_path / 'x.npz'), steps=1, raw_sources=other,
                             examples_path=examples)
  os.remove(examples)
  with pytest.raises(FileNotFoundError, match=r'examples.npz, which does not exist'):
    exported.ExportedData(paths['meta_align'])


def test_train_and_evaluate_from_a_bundle_without_tensorflow(bundle, tmp_path):
  """What a GPU machine without TensorFlow runs: training, meta-val and meta-test from a bundle."""
  _, path = bundle
  workdir = str(tmp_path / 'run')
  script = textwrap.dedent(f"""
      import json, sys
      for name in ('tensorflow', 'tensorflow_datasets', 'librosa'):   # as if not installed:
        sys.modules[name] = None   # import raises ImportError, importlib.util.find_spec -> None
      from meta_align_jax import train
      from meta_align_jax.feeds import exported
      from tests.tiny import override, tiny_config
      config = override(tiny_config(**{BASE!r}), **{BUNDLE!r}, **{{'train.eval_every': 2}})
      run = train.train_and_evaluate(config, {workdir!r}, data=exported.ExportedData({path!r}))
      print('RESULT', json.dumps({{'finished': run.finished, 'step': run.step,
                                   'accuracy': run.eval_results['accuracy_mean'],
                                   'episodes': run.eval_results['num_episodes']}}))
  """)
  proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu'), timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  result = json.loads(proc.stdout.split('RESULT ', 1)[1])
  assert result['finished'] and result['step'] == 4 and result['episodes'] == 12
  assert 0.0 <= result['accuracy'] <= 1.0
  with open(os.path.join(workdir, train.METRICS_FILE)) as f:
    records = [json.loads(line) for line in f]
  assert [r['step'] for r in records if 'val/accuracy_mean' in r] == [2, 4]
  assert os.path.exists(os.path.join(workdir, io.TARGET_SUBSET_FILE))
