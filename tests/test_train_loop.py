"""Tests of the training loop, checkpoints, resume, guard rails and the evaluation protocol.

Batches come from `FakeData` (tests/fakes.py), an in-memory stand-in for `meta_align_jax.data`
with the data contract's shapes whose batch for step s is a pure function of (seed, s); it is
passed to the library through its `data=` seam. The loop on the real data package and through
`launch/run.py` is `test_train_loop_real.py`.

Run from the repository root: `python -m pytest tests/test_train_loop.py`.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import meta_align_jax
from meta_align_jax import checkpoint, evaluate, jsonl_writer, train
from tests.fakes import REPO, FakeData, compilation_cache, step_calls  # noqa: F401  (fixtures)
from tests.fakes import assert_trees_close as _assert_trees_close
from tests.fakes import config as _config
from tests.fakes import records as _records
from tests.fakes import steps as _steps


# --------------------------------------------------------------------------- end to end


def test_train_checkpoint_resume_eval(tmp_path, monkeypatch):
  eval_steps = []
  make_eval_step = train.train_step_lib.make_eval_step
  monkeypatch.setattr(train.train_step_lib, 'make_eval_step',
                      lambda *a, **k: eval_steps.append(make_eval_step(*a, **k)) or eval_steps[-1])
  workdir = str(tmp_path / 'run')
  run = train.train_and_evaluate(_config(), workdir, data=FakeData())
  assert run.finished and run.step == 6
  # Meta-val during training and meta-test after it shared one compiled evaluation step.
  assert len(eval_steps) == 1 and eval_steps[0].__wrapped__._cache_size() == 1   # (the jit)
  names = set(os.listdir(workdir))
  assert {'config.json', 'checkpoints', 'metrics.jsonl', 'eval_results.json'} <= names
  assert any(n.startswith('events.out.tfevents') for n in names)
  assert _steps(workdir) == [3, 6]   # latest 2 (3 is also the only other validated step)
  results = json.load(open(os.path.join(workdir, 'eval_results.json')))
  for key in ('accuracy_mean', 'accuracy_ci95', 'num_episodes', 'split', 'checkpoint_step',
              'retrieval'):
    assert key in results
  assert results['num_episodes'] == 6 and results['split'] == 'test'
  assert results['checkpoint_step'] in (3, 6) and results['checkpoint'] == 'best'
  assert 0.0 <= results['accuracy_mean'] <= 1.0 and results['accuracy_ci95'] >= 0.0
  # The per-episode accuracies behind the mean, for paired comparisons between runs.
  episodes = np.load(os.path.join(workdir, evaluate.EPISODES_FILE))
  assert episodes.shape == (6,) and episodes.dtype == np.float32
  np.testing.assert_allclose(episodes.mean(), results['accuracy_mean'], rtol=1e-6)
  for direction in ('source_to_target', 'target_to_source'):
    r = results['retrieval'][direction]
    assert set(r) == {'R@1', 'R@5', 'R@10', 'median_rank', 'num_queries'}
    assert r['R@1'] <= r['R@5'] <= r['R@10'] == 1.0   # 3 classes of 4 items: top 10 always hits
  assert 'accuracy' in evaluate.format_results(results)
  records = _records(workdir)
  keys = set().union(*records)
  for key in ('train/loss', 'train/meta_loss', 'train/align_loss', 'train/step_time',
              'val/accuracy_mean', 'val/accuracy_ci95'):
    assert key in keys, key
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4, 6]

  # Resume to 9 steps: starts from step 6; metrics continue without repeating steps.
  run = train.train_and_evaluate(_config(**{'train.num_steps': 9}), workdir, data=FakeData())
  assert run.step == 9
  assert [r['step'] for r in _records(workdir) if 'train/loss' in r] == [2, 4, 6, 8, 9]
  assert 9 in _steps(workdir)
  # Eval-only: latest, then an explicit step.
  latest = evaluate.evaluate(_config(), workdir, checkpoint='latest', data=FakeData())
  assert latest['checkpoint_step'] == 9
  config, _, state = meta_align_jax.restore(workdir, step='latest')
  assert int(state.step) == 9 and config.train.num_steps == 9


def test_resumed_run_matches_uninterrupted(tmp_path):
  full, split = str(tmp_path / 'full'), str(tmp_path / 'split')
  config = _config(**{'train.eval_every': 0, 'eval.retrieval': False})
  train.train(config, full, data=FakeData())
  train.train(_config(**{'train.eval_every': 0, 'train.num_steps': 4}), split, data=FakeData())
  assert _steps(split)[-1] == 4
  train.train(config, split, data=FakeData())
  _, _, a = checkpoint.restore(full)
  _, _, b = checkpoint.restore(split)
  assert int(a.step) == int(b.step) == 6
  _assert_trees_close(a.params, b.params, rtol=1e-5, atol=1e-6)
  _assert_trees_close(a.opt_state, b.opt_state, rtol=1e-5, atol=1e-6)


def test_sigterm_saves_checkpoint_and_stops(tmp_path, step_calls):
  workdir = str(tmp_path / 'run')
  # The signal arrives while batch 4 is drawn: step 5 completes, is checkpointed (without the
  # meta-validation due at step 5: a preempted run must save quickly), and the run stops.
  data = FakeData(hooks={4: lambda: os.kill(os.getpid(), signal.SIGTERM)})
  config = _config(**{'train.eval_every': 5, 'train.checkpoint_every': 100})
  run = train.train_and_evaluate(config, workdir, data=data)
  assert run.stopped_by == signal.SIGTERM and run.step == 5 and run.eval_results is None
  assert len(step_calls) == 5
  assert _steps(workdir) == [5]
  manager = checkpoint.make_manager(workdir, read_only=True)
  assert checkpoint.VAL_METRIC not in (manager.metrics(5) or {})
  manager.close()
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # handler put back
  run = train.train(config, workdir, data=FakeData())
  assert run.finished and _steps(workdir) == [5, 6]


def _worker(workdir, num_steps):
  """Subprocess body for the SIGKILL test: a long run checkpointing every step."""
  config = _config(**{'train.num_steps': num_steps, 'train.checkpoint_every': 1,
                      'train.eval_every': 0, 'train.log_every': 1})
  train.train(config, workdir, data=FakeData())


def test_sigkill_mid_run_then_resume(tmp_path):
  # The killed run uses pmap over 2 CPU devices; the resumed one jit on this process's single
  # device: checkpoints do not depend on the device layout.
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, 'tests')]),
             JAX_PLATFORMS='cpu', JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  proc = subprocess.Popen([sys.executable, __file__, workdir, '1000'], env=env, cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  ckpt_dir = os.path.join(workdir, checkpoint.CHECKPOINT_DIR)
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline:   # wait for a few complete steps, then kill mid-save
    done = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
    if len(done) >= 2 and max(map(int, done)) >= 3:
      break
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    time.sleep(0.05)
  else:
    proc.kill()
    pytest.fail('the worker wrote no checkpoint in 120 s')
  time.sleep(0.13)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  proc.stderr.close()
  killed_at = _steps(workdir)[-1]
  assert 3 <= killed_at < 1000
  config = _config(**{'train.num_steps': killed_at + 2, 'train.eval_every': 0})
  run = train.train(config, workdir, data=FakeData())
  assert run.finished and run.step == killed_at + 2
  for step in _steps(workdir):   # every checkpoint left on disk restores
    _, _, state = checkpoint.restore(workdir, step=step)
    assert int(state.step) == step


# --------------------------------------------------------------------------- guard rails


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  config = _config(**{'train.eval_every': 0})
  with pytest.raises(FloatingPointError, match='step 5'):
    train.train(config, workdir, data=FakeData(nan_at=4))   # batch 4 feeds step 5
  assert _steps(workdir) == [3]
  _, _, state = checkpoint.restore(workdir)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize('overrides, field', [
    ({'source.encoder': 'conv5'}, 'config.source.encoder'),
    ({'task.ways': 7}, 'config.task.ways'),
    ({'eval.ways': 4}, 'config.eval.ways'),
    ({'align.ways': 7, 'align.pairs': 14}, 'config.align.ways'),
    ({'task.meta_on': ('audio',)}, 'config.task.meta_on'),
    ({'align.pairs': 7}, 'config.align.pairs'),
    ({'train.log_every': 0}, 'config.train.log_every'),
    ({'train.keep_checkpoints': 0}, 'config.train.keep_checkpoints'),
    ({'eval.split': 'holdout'}, 'config.eval.split'),
    ({'execution.parallel': 'spmd'}, 'config.execution.parallel'),
])
def test_invalid_config_fails_before_compiling(tmp_path, overrides, field, step_calls):
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    train.train_and_evaluate(_config(**overrides), str(tmp_path / 'run'), data=FakeData())
  assert not step_calls   # the train step was never called, so nothing compiled


def test_incompatible_checkpoint_refused(tmp_path):
  workdir = str(tmp_path / 'run')
  config = _config(**{'train.num_steps': 3, 'train.eval_every': 0, 'eval.retrieval': False})
  train.train(config, workdir, data=FakeData())
  wider = _config(**{'train.num_steps': 3, 'train.eval_every': 0, 'model.width': 16})
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r'config\.model\.width'):
    train.train(wider, workdir, data=FakeData())
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r'config\.model\.width'):
    evaluate.evaluate(wider, workdir, data=FakeData())
  # Without config.json the parameter shapes still catch it, naming the leaves.
  os.remove(os.path.join(workdir, checkpoint.CONFIG_FILE))
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r'params/source/.*kernel'):
    train.train(wider, workdir, data=FakeData())


# --------------------------------------------------------------------------- evaluation pieces


def test_eval_modes_restore_requested_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  config = _config(**{'train.keep_checkpoints': 1, 'eval.retrieval': False})
  train.train(config, workdir, data=FakeData())
  steps = _steps(workdir)
  assert 6 in steps and len(steps) <= 2   # latest 1 + the best by meta-validation
  manager = checkpoint.make_manager(workdir, read_only=True)
  best = checkpoint.resolve_step(manager, 'best')
  assert checkpoint.VAL_METRIC in manager.metrics(best)
  manager.close()
  res = evaluate.evaluate(config, workdir, checkpoint='best', data=FakeData())
  assert res['checkpoint_step'] == best
  res = evaluate.evaluate(config, workdir, checkpoint=str(steps[0]), data=FakeData())
  assert res['checkpoint_step'] == steps[0]
  with pytest.raises(FileNotFoundError, match='saved steps'):
    evaluate.evaluate(config, workdir, checkpoint=4, data=FakeData())


def test_retrieval_metrics_and_ci():
  query = np.eye(3)[[0, 1, 2, 0]]
  gallery = np.eye(3)[[1, 0, 2]] + 0.01
  m = evaluate.retrieval_metrics(query, gallery, np.array([0, 1, 2, 1]), np.array([0, 1, 2]))
  # Query 3 (class 1, looks like class 0) finds its class second-nearest... or last.
  ranks = evaluate.first_hit_ranks(query, gallery, np.array([0, 1, 2, 1]), np.array([0, 1, 2]))
  np.testing.assert_array_equal(ranks, [2, 2, 1, 1])
  assert m['R@1'] == 0.5 and m['R@5'] == 1.0 and m['median_rank'] == 1.5
  mean, ci = evaluate.mean_ci95([0.0, 1.0, 0.0, 1.0])
  assert mean == 0.5 and ci == pytest.approx(1.96 * 0.5 / 2)


def test_jsonl_writer_trims_steps_after_resume(tmp_path):
  path = str(tmp_path / 'metrics.jsonl')
  w = jsonl_writer.JsonlWriter(path)
  for step in (1, 2, 3):
    w.write_scalars(step, {'loss': step, 'bad': float('nan')})
  w.close()
  with open(path, 'a') as f:
    f.write('{"step": 4, "lo')   # a line cut short by SIGKILL
  w = jsonl_writer.JsonlWriter(path, resume_step=2)
  w.write_scalars(3, {'loss': 30.0})
  w.close()
  records = [json.loads(line) for line in open(path)]
  assert [(r['step'], r['loss']) for r in records] == [(1, 1.0), (2, 2.0), (3, 30.0)]
  assert records[0]['bad'] == 'nan'



if __name__ == '__main__':
  _worker(sys.argv[1], int(sys.argv[2]))
