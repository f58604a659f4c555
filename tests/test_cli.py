"""First contact with `launch/run.py` (issue 19): help and --print_config without TensorFlow, and
--mode eval that looks for the checkpoint before building any data.

The full train -> eval -> read-only eval path through the CLI is `test_train_loop_real`'s
`test_cli_on_synthetic_concepts`.
"""

import os
import subprocess
import sys

import pytest

from meta_align_jax import evaluate
from tests.fakes import REPO, FakeData
from tests.fakes import config as _config

RUN_PY = os.path.join(REPO, 'launch', 'run.py')

# Runs launch/run.py as __main__ with the given flags, then reports which heavy modules it
# imported (absl's help exits through SystemExit).
_PROBE = """
import runpy, sys
sys.argv = [{run_py!r}] + {flags!r}
try:
  runpy.run_path({run_py!r}, run_name='__main__')
except SystemExit as e:
  code = e.code or 0
except Exception as e:  # absl's app.run re-raises what main raised
  print(type(e).__name__, e, file=sys.stderr)
  code = type(e).__name__
else:
  code = 0
print('EXIT', code, 'MODULES', *[m for m in ('tensorflow', 'jax', 'clu', 'orbax')
                                  if m in sys.modules], file=sys.stderr)
"""


def _probe(tmp_path, *flags):
  code = _PROBE.format(run_py=RUN_PY, flags=list(flags))
  out = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith('EXIT'), out.stderr[-3000:]
  return out.stdout, last


def test_help_answers_without_importing_tensorflow(tmp_path):
  stdout, status = _probe(tmp_path, '--helpfull')
  assert status.startswith('EXIT 1 MODULES')   # absl's help exits with status 1
  assert 'tensorflow' not in status and 'jax' not in status and 'clu' not in status
  assert 'configs/default.py' in stdout and '--print_config' in stdout
  assert '--eval_checkpoint' in stdout


def test_print_config_prints_the_resolved_config_and_exits(tmp_path):
  stdout, status = _probe(tmp_path, '--config', os.path.join(REPO, 'configs', 'test.py'),
                          '--config.train.num_steps=17', '--print_config')
  assert status.startswith('EXIT 0') and 'tensorflow' not in status
  assert 'num_steps: 17' in stdout and 'z_dim: 16' in stdout
  assert os.listdir(tmp_path) == []   # no workdir, nothing written


class _RecordingData(FakeData):
  def __init__(self):
    super().__init__()
    self.calls = []

  def make_eval_episodes(self, *args, **kwargs):
    self.calls.append('episodes')
    return super().make_eval_episodes(*args, **kwargs)


def test_eval_on_empty_workdir_looks_for_the_checkpoint_first(tmp_path):
  data = _RecordingData()
  with pytest.raises(FileNotFoundError, match='No checkpoint'):
    evaluate.evaluate(_config(), str(tmp_path), data=data)
  assert not data.calls   # no episodes (or splits) were built
  # The CLI: a clear error, and nothing written into the workdir.
  empty = tmp_path / 'empty'
  empty.mkdir()
  out = subprocess.run(
      [sys.executable, RUN_PY, '--config', os.path.join(REPO, 'configs', 'test.py'),
       '--workdir', str(empty), '--mode', 'eval'], cwd=str(tmp_path), capture_output=True,
      text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode != 0
  assert 'No checkpoint in' in out.stderr and 'train first' in out.stderr
  assert os.listdir(empty) == []


# --------------------------------------------------------------------------- deterministic switch


def test_deterministic_switch_sets_xla_flags_before_jax_starts(tmp_path, monkeypatch):
  from meta_align_jax import determinism, train  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=1')
  assert determinism.deterministic_env(_config()) == {}   # off by default
  on = _config(**{'execution.deterministic': True})
  env = determinism.deterministic_env(on)
  assert env['XLA_FLAGS'] == ('--xla_force_host_platform_device_count=1 '
                              '--xla_gpu_deterministic_ops=true')   # existing flags kept
  # This process's JAX has started without the flag: the library refuses instead of ignoring it.
  import jax  # pylint: disable=g-import-not-at-top
  jax.devices()
  with pytest.raises(ValueError, match=r'config\.execution\.deterministic'):
    train.check_loop_config(on)
  # launch/run.py sets it before JAX starts (here: --mode eval on an empty workdir, which stops at
  # 'No checkpoint' after the backend has started).
  empty = tmp_path / 'empty'
  empty.mkdir()
  code = _PROBE.format(run_py=RUN_PY, flags=[
      '--config', os.path.join(REPO, 'configs', 'test.py'), '--workdir', str(empty),
      '--mode', 'eval', '--config.execution.deterministic=True']) + (
          "import os, jax\n"
          "from jax._src import xla_bridge\n"
          "print('FLAGS', os.environ['XLA_FLAGS'], xla_bridge.backends_are_initialized(),"
          " float(jax.numpy.ones(3).sum()), file=sys.stderr)\n")
  monkeypatch.delenv('XLA_FLAGS')
  out = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert 'FileNotFoundError No checkpoint' in out.stderr, out.stderr[-3000:]
  flags = [line for line in out.stderr.splitlines() if line.startswith('FLAGS')]
  assert flags == ['FLAGS --xla_gpu_deterministic_ops=true True 3.0'], out.stderr[-3000:]
