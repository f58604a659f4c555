"""Runs that cannot hurt each other (issue 19): the workdir lock, live metrics, fallback from an
unreadable checkpoint, kill-safe cleanup of old steps, config.json written only by valid runs,
and errors that name what to fix.

Batches come from `tests/fakes.py`'s `FakeData`; subprocess workers run this file as a script.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from meta_align_jax import checkpoint, evaluate, train, workdir_lock
from tests.fakes import REPO, FakeData, compilation_cache, step_calls  # noqa: F401  (fixtures)
from tests.fakes import config as _config
from tests.fakes import records as _records
from tests.fakes import steps as _steps

_QUICK = {'train.eval_every': 0, 'eval.retrieval': False}


def _env():
  return dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu',
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


def _wait_for(predicate, proc, what, timeout=240):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      pytest.fail(f'the worker exited ({proc.returncode}) before {what}: '
                  + proc.stderr.read().decode()[-3000:])
    time.sleep(0.05)
  proc.kill()
  pytest.fail(f'no {what} in {timeout} s')


def _worker_train(workdir):
  """Subprocess body: a run logging every step that hangs after step 5 (until killed), so that
  only a flush at every log step, not a full file buffer, puts lines into metrics.jsonl."""
  config = _config(**_QUICK, **{'train.num_steps': 1000, 'train.log_every': 1,
                                'train.checkpoint_every': 2})
  train.train(config, workdir, data=FakeData(hooks={5: lambda: time.sleep(3600)}))


def _worker_kill_during_cleanup(workdir):
  """Subprocess body: saves steps 1, 2, 3 with keep_checkpoints=1 and SIGKILLs itself halfway
  through removing the old steps that saving step 3 cleans up."""
  import jax  # pylint: disable=g-import-not-at-top
  from meta_align_jax import train_step  # pylint: disable=g-import-not-at-top
  from meta_align_jax.models import registry  # pylint: disable=g-import-not-at-top
  config = _config(**_QUICK, **{'train.keep_checkpoints': 1})
  state = jax.device_get(train_step.init_train_state(config, registry.build_model(config),
                                                     jax.random.key(0)))
  checkpoint.write_config(workdir, config)
  manager = checkpoint.make_manager(workdir, config)
  rmtree = shutil.rmtree

  def rmtree_then_die(path, *args, **kwargs):
    files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    if files:
      os.remove(files[0])   # part of the deletion done ...
      os.kill(os.getpid(), signal.SIGKILL)   # ... and killed in the middle of it
    rmtree(path, *args, **kwargs)

  for step in (1, 2, 3):
    if step == 3:
      shutil.rmtree = rmtree_then_die   # (Orbax's own deletion is a rename: never reached)
    checkpoint.save(manager, state.replace(step=np.int32(step)))
    manager.wait_until_finished()
  manager.close()


# --------------------------------------------------------------------------- defect 1, issue 20.5


def test_second_run_refused_metrics_live_and_stale_lock_resumes(tmp_path):
  """Two processes on one workdir: the second is refused naming the first (host, pid, start);
  metrics.jsonl is readable while the first runs and keeps its lines after a SIGKILL; the lock
  of the killed run does not block the resume."""
  workdir = str(tmp_path / 'run')
  proc = subprocess.Popen([sys.executable, __file__, 'train', workdir], env=_env(), cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  metrics = os.path.join(workdir, train.METRICS_FILE)

  def logged_steps():
    if not os.path.exists(metrics):
      return []
    with open(metrics) as f:
      return [json.loads(line)['step'] for line in f if line.endswith('\n')]

  ckpt_dir = os.path.join(workdir, checkpoint.CHECKPOINT_DIR)
  saved_step = lambda: os.path.isdir(ckpt_dir) and any(n.isdigit() for n in os.listdir(ckpt_dir))
  try:
    _wait_for(lambda: len(logged_steps()) >= 5 and saved_step(), proc,
              'lines in metrics.jsonl and a checkpoint during the run')
    assert logged_steps() == [1, 2, 3, 4, 5]   # flushed at every log step, while running
    saved = open(os.path.join(workdir, checkpoint.CONFIG_FILE)).read()
    with pytest.raises(workdir_lock.WorkdirLockedError) as refused:
      train.train(_config(**_QUICK, **{'train.num_steps': 4}), workdir, data=FakeData())
    message = str(refused.value)
    assert f'pid {proc.pid}' in message and socket.gethostname() in message
    assert 'started 20' in message   # the holder's start time (ISO date)
    assert open(os.path.join(workdir, checkpoint.CONFIG_FILE)).read() == saved
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
  assert logged_steps() == [1, 2, 3, 4, 5]   # the killed run kept what it logged
  holder = json.load(open(os.path.join(workdir, workdir_lock.LOCK_FILE)))
  assert holder['pid'] == proc.pid   # the dead run's lock file is still there ...
  last = _steps(workdir)[-1]
  run = train.train(_config(**_QUICK, **{'train.num_steps': last + 1}), workdir, data=FakeData())
  assert run.finished and run.step == last + 1   # ... and does not block the resume
  assert [r['step'] for r in _records(workdir)][-1] == last + 1


# --------------------------------------------------------------------------- defects 2 and 3


def _truncate_largest_array_file(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, 'state'))
           for f in fs if os.sep + 'd' + os.sep in os.path.join(d, f)]
  path = max(files, key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.truncate(100)


def test_unreadable_latest_checkpoint(tmp_path, capfd, caplog):
  workdir = str(tmp_path / 'run')
  config = _config(**_QUICK)
  train.train(config, workdir, data=FakeData())
  assert _steps(workdir) == [3, 6]
  _truncate_largest_array_file(os.path.join(workdir, checkpoint.CHECKPOINT_DIR, '6'))
  capfd.readouterr()
  # Evaluating the named unreadable step fails clearly, not buried under asyncio tracebacks.
  with pytest.raises(checkpoint.UnreadableCheckpointError,
                     match=r'step 6 .* cannot be read .*Other saved steps: \[3\]'):
    evaluate.evaluate(config, workdir, checkpoint='6', data=FakeData())
  time.sleep(0.5)   # TensorStore's remaining reads complete in the background
  assert 'Event loop is closed' not in capfd.readouterr().err
  # Resume falls back to step 3, says so, and keeps step 6 (moved aside, not deleted).
  run = train.train(_config(**_QUICK, **{'train.num_steps': 7}), workdir, data=FakeData())
  assert run.finished and run.step == 7
  assert 'Skipping checkpoint step 6: Checkpoint step 6' in caplog.text
  aside = os.listdir(os.path.join(workdir, checkpoint.UNREADABLE_DIR))
  assert len(aside) == 1 and aside[0].startswith('6-')
  assert _steps(workdir) == [6, 7]   # a new, readable step 6 (trained from 3)
  for step in (6, 7):
    _, _, state = checkpoint.restore(workdir, step=step)
    assert int(state.step) == step


def test_half_deleted_step_is_ignored_and_finished(tmp_path):
  """The remains of a deletion killed halfway (as 49c942d left them: an empty state/)."""
  workdir = str(tmp_path / 'run')
  train.train(_config(**_QUICK), workdir, data=FakeData())
  half = os.path.join(workdir, checkpoint.CHECKPOINT_DIR, '3')
  shutil.rmtree(os.path.join(half, 'shapes'))
  shutil.rmtree(os.path.join(half, 'state'))
  os.makedirs(os.path.join(half, 'state'))
  with pytest.raises(FileNotFoundError, match=r'saved steps: \[6\]'):
    checkpoint.restore(workdir, step=3)
  assert checkpoint.restore(workdir, step='best')[2].step == 6
  checkpoint.make_manager(workdir, _config()).close()   # a training run's manager finishes it
  assert not os.path.exists(half)


def test_kill_during_cleanup_of_old_steps(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = subprocess.run([sys.executable, __file__, 'cleanup', workdir], env=_env(), cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  for step in _steps(workdir):   # every step listed restores
    assert int(checkpoint.restore(workdir, step=step)[2].step) == step
  assert _steps(workdir)[-1] >= 2
  checkpoint.make_manager(workdir, _config()).close()
  assert not os.path.exists(os.path.join(workdir, checkpoint.CHECKPOINT_DIR,
                                         checkpoint.DELETING_DIR))


# --------------------------------------------------------------------------- defects 4 and 5


class _RefusingData(FakeData):
  """The data pipeline's own checks refuse the config when the iterator is made."""

  def make_train_iterator(self, config, *, start_step=0, workdir=None):
    raise ValueError('config.task.queries: not enough examples per class (refused by the data)')


def test_failed_runs_leave_config_json_unchanged(tmp_path, step_calls):
  fresh = str(tmp_path / 'fresh')
  with pytest.raises(ValueError, match='refused by the data'):
    train.train(_config(**_QUICK), fresh, data=_RefusingData())
  assert not os.path.exists(os.path.join(fresh, checkpoint.CONFIG_FILE))
  workdir = str(tmp_path / 'run')
  train.train(_config(**_QUICK, **{'train.num_steps': 3}), workdir, data=FakeData())
  path = os.path.join(workdir, checkpoint.CONFIG_FILE)
  saved = open(path).read()
  # A resume with a new learning rate refused by the data checks ...
  with pytest.raises(ValueError, match='refused by the data'):
    train.train(_config(**_QUICK, **{'optim.lr': 0.5}), workdir, data=_RefusingData())
  assert open(path).read() == saved
  # ... or stopped by the NaN guard before its first checkpoint: config.json stays.
  with pytest.raises(FloatingPointError, match='step 4'):
    train.train(_config(**_QUICK, **{'optim.lr': 0.5}), workdir, data=FakeData(nan_at=3))
  assert open(path).read() == saved
  # A run that saves a checkpoint records its config.
  train.train(_config(**_QUICK, **{'optim.lr': 0.5, 'train.num_steps': 4}), workdir,
              data=FakeData())
  assert json.load(open(path))['optim']['lr'] == 0.5


def test_num_steps_zero_refused_before_compiling(tmp_path, step_calls, monkeypatch):
  made = []
  monkeypatch.setattr(train.train_step_lib, 'make_train_step', lambda *a, **k: made.append(1))
  monkeypatch.setattr(train.train_step_lib, 'make_eval_step', lambda *a, **k: made.append(1))
  with pytest.raises(ValueError, match=r'config\.train\.num_steps=0'):
    train.train_and_evaluate(_config(**{'train.num_steps': 0}), str(tmp_path / 'run'),
                             data=FakeData())
  assert not made and not os.path.exists(tmp_path / 'run')


# --------------------------------------------------------------------------- defect 8


def test_changed_clip_norm_names_the_field(tmp_path):
  workdir = str(tmp_path / 'run')
  train.train(_config(**_QUICK, **{'train.num_steps': 3}), workdir, data=FakeData())
  no_clip = _config(**_QUICK, **{'train.num_steps': 4, 'optim.clip_norm': 0.0})
  with pytest.raises(checkpoint.IncompatibleCheckpointError) as e:
    train.train(no_clip, workdir, data=FakeData())
  assert 'config.optim.clip_norm' in str(e.value) and 'leaves' not in str(e.value)
  # Without config.json, the leaves say that only the optimiser state differs, and what to check.
  os.remove(os.path.join(workdir, checkpoint.CONFIG_FILE))
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r'config\.optim\.clip_norm'):
    train.train(no_clip, workdir, data=FakeData())


@pytest.mark.parametrize('value', ['5', 'no/such/dir'])   # (ml_collections refuses an int)
def test_bad_data_dir_refused(tmp_path, value, step_calls, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError, match=r'config\.data\.data_dir'):
    train.train(_config(**{'data.data_dir': value}), str(tmp_path / 'run'), data=FakeData())
  assert not os.path.exists(tmp_path / '5') and not step_calls


if __name__ == '__main__':
  {'train': _worker_train, 'cleanup': _worker_kill_during_cleanup}[sys.argv[1]](sys.argv[2])
