"""The training loop on the real data package: the tf.data pipeline on in-memory modalities, the
embedded `synthetic_concepts` builder end to end, and `launch/run.py` (console output, --mode eval,
a read-only workdir). Skipped where the data package is not there.

The loop's own tests (checkpoints, resume, guard rails, evaluation) on `FakeData` are
`test_train_loop.py`. Run from the repository root:
`python -m pytest tests/test_train_loop_real.py`.
"""

import functools
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from meta_align_jax import checkpoint, train
from tests.fakes import REPO, FakeData, compilation_cache, step_calls  # noqa: F401  (fixtures)
from tests.fakes import assert_trees_close as _assert_trees_close
from tests.fakes import config as _config


def _real_pipeline_on(sources):
  """The real data package (tf.data episodes, splits, fixed episodes) on in-memory modalities."""
  data = pytest.importorskip('meta_align_jax.data')
  names = ('make_splits', 'make_train_iterator', 'make_eval_episodes', 'make_retrieval_set')
  return types.SimpleNamespace(
      **{n: functools.partial(getattr(data, n), sources=sources) for n in names})


def _in_memory_sources(config):
  data = pytest.importorskip('meta_align_jax.data')
  rng = np.random.default_rng(0)
  label = np.repeat(np.arange(15), 8).astype(np.int32)
  names = [f'concept{i}' for i in range(15)]
  ids = np.arange(label.size, dtype=np.int64)
  fake = FakeData()
  sources = data.Sources(
      source=data.ModalityData(x=np.clip(fake._x(config, 'source', label, rng), 0, 1),
                               label=label, class_names=names, example_id=ids),
      target=data.ModalityData(x=fake._x(config, 'target', label, rng), label=label,
                               class_names=names, example_id=ids))
  return sources


def test_real_pipeline_with_in_memory_data(tmp_path):
  config = _config()
  sources = _in_memory_sources(config)
  workdir = str(tmp_path / 'run')
  run = train.train_and_evaluate(config, workdir, data=_real_pipeline_on(sources))
  assert run.finished and run.eval_results['num_episodes'] == 6
  assert {'splits.json', 'episodes_val.npz', 'episodes_test.npz'} <= set(os.listdir(workdir))
  # Resume is exact with the real pipeline too.
  train.train(_config(**{'train.num_steps': 8}), workdir, data=_real_pipeline_on(sources))
  other = str(tmp_path / 'other')
  train.train(_config(**{'train.num_steps': 8}), other, data=_real_pipeline_on(sources))
  _, _, a = checkpoint.restore(workdir, 'latest')
  _, _, b = checkpoint.restore(other, 'latest')
  assert int(a.step) == int(b.step) == 8
  _assert_trees_close(a.params, b.params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('overrides, field', [
    ({'task.queries': 8}, 'config.task'),         # K + Q = 9 > 8 examples per class
    ({'eval.queries': 8}, 'config.eval'),
    ({'eval.ways': 4}, 'config.eval.ways'),       # 15 classes split 9/3/3
])
def test_real_pipeline_rejects_impossible_tasks_before_compiling(tmp_path, overrides, field,
                                                                step_calls):
  config = _config(**overrides)
  data = _real_pipeline_on(_in_memory_sources(config))
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    train.train_and_evaluate(config, str(tmp_path / 'run'), data=data)
  assert not step_calls


def _synthetic_concepts():
  """The synthetic_concepts builder class, or None when the data package does not have it yet."""
  try:
    from meta_align_jax.data import registry  # pylint: disable=g-import-not-at-top
    import meta_align_jax.data.builders  # noqa: F401 pylint: disable=g-import-not-at-top
    return registry.get('synthetic_concepts')
  except Exception:  # pylint: disable=broad-except
    return None


_NO_BUILDER = 'the data package or its synthetic_concepts builder is not there yet'


@pytest.fixture(scope='module')
def small(tmp_path_factory) -> dict:
  """Config overrides reading the builder's 16-class `small` config (generated in seconds), from
  one data_dir for the module: the first test to load it builds it, the next reads it."""
  return {'data.source_dataset': 'synthetic_concepts/small',
          'data.target_dataset': 'synthetic_concepts/small',
          'data.data_dir': str(tmp_path_factory.mktemp('tfds'))}


@pytest.mark.skipif(_synthetic_concepts() is None, reason=_NO_BUILDER)
def test_synthetic_concepts_end_to_end(tmp_path, small):
  """The real builder through the real pipeline and the loop, then a resume."""
  workdir = str(tmp_path / 'run')
  run = train.train_and_evaluate(_config(**small), workdir)
  assert run.finished and run.eval_results['num_episodes'] == 6
  assert run.eval_results['retrieval']['source_to_target']['num_queries'] > 0
  assert {'splits.json', 'episodes_val.npz', 'episodes_test.npz'} <= set(os.listdir(workdir))
  run = train.train_and_evaluate(_config(**small, **{'train.num_steps': 7}), workdir)
  assert run.step == 7 and run.eval_results is not None


@pytest.mark.skipif(_synthetic_concepts() is None, reason=_NO_BUILDER)
def test_cli_on_synthetic_concepts(tmp_path, small):
  """`launch/run.py`: train and evaluate, then --mode eval with the workdir's saved config."""
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  run_py = [sys.executable, os.path.join(REPO, 'launch', 'run.py')]
  overrides = [f'--config.{k}={v}' for k, v in small.items()]
  cmd = run_py + ['--config', os.path.join(REPO, 'configs', 'test.py'), '--workdir', workdir]
  out = subprocess.run(cmd + overrides, env=env, cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f'Wrote {workdir}' in out.stdout and 'accuracy' in out.stdout and 'R@1' in out.stdout
  lines = out.stderr.splitlines()
  progress = [line for line in lines if 'steps/s' in line]
  assert len(progress) == 3 and all('ETA' in line for line in progress)   # steps 2, 4, 6
  assert len([line for line in lines if 'Parameters: ' in line]) == 1   # a one-line summary
  assert os.path.getsize(os.path.join(workdir, train.PARAMETERS_FILE)) > 0   # the full table
  warned = [line for line in lines if line.startswith(('W', 'E')) or 'Warning' in line]
  assert not warned, warned   # a clean run warns about nothing
  results = json.load(open(os.path.join(workdir, 'eval_results.json')))
  assert results['num_episodes'] == 6 and results['checkpoint_step'] in (3, 6)
  out = subprocess.run(run_py + ['--workdir', workdir, '--mode', 'eval', '--eval_checkpoint', '3'],
                       env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.load(open(os.path.join(workdir, 'eval_results.json')))['checkpoint_step'] == 3
  # A read-only workdir: evaluated and printed, nothing written, exit 0.
  if not _make_read_only(workdir):
    return
  try:
    out = subprocess.run(run_py + ['--workdir', workdir, '--mode', 'eval',
                                   '--eval_checkpoint', '6'],
                         env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
  finally:
    _make_read_only(workdir, undo=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'accuracy' in out.stdout and 'step 6' in out.stdout and 'read-only' in out.stderr
  assert json.load(open(os.path.join(workdir, 'eval_results.json')))['checkpoint_step'] == 3


def _make_read_only(path, undo=False) -> bool:
  """chmod for users; root ignores permissions, so it gets the immutable attribute (chattr)."""
  if os.geteuid() != 0:
    os.chmod(path, 0o755 if undo else 0o555)
    return True
  return subprocess.run(['chattr', '-i' if undo else '+i', path],
                        capture_output=True).returncode == 0
