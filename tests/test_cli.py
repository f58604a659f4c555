"""First contact with `launch/run.py` (issue 19): help and --print_config without TensorFlow, and
--mode eval that looks for the checkpoint before building any data.

The full train -> eval -> read-only eval path through the CLI is `test_train_loop`'s
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
