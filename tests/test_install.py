"""The package installs (`pip install -e .` and `pip install .`) with its dependencies declared,
and imports from outside the repository.

Nothing is downloaded: each install goes into a fresh virtual environment that sees the test
interpreter's site-packages (a .pth file) for the dependencies and for pip and setuptools, with
`--no-deps --no-build-isolation`. The package is installed from a copy of the repository's
packaging files, so the checkout gets no build/ or .egg-info.
"""

import importlib.metadata
import os
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest

from tests.fakes import REPO

CORE = ('jax', 'flax', 'optax', 'orbax-checkpoint', 'ml-collections', 'numpy', 'absl-py', 'clu')
DATA = ('tensorflow-cpu', 'tensorflow-datasets', 'librosa')

_CHECK = """
import importlib.metadata as md, os, sys
import meta_align_jax
print('TF', 'tensorflow' in sys.modules)
import meta_align_jax.train, meta_align_jax.checkpoint, meta_align_jax.data
print('FILE', meta_align_jax.__file__)
reqs = md.requires('meta_align_jax')
core = sorted(r.split('>')[0].split('=')[0].strip() for r in reqs if 'extra ==' not in r)
data = sorted(r.split('>')[0].split('=')[0].strip() for r in reqs if "extra == 'data'" in r
              or 'extra == "data"' in r)
print('CORE', *core)
print('DATA', *data)
"""


def _venv(tmp_path):
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
  python = venv / 'bin' / 'python'
  purelib = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()'
                            "['purelib'])"], capture_output=True, text=True,
                           check=True).stdout.strip()
  shared = site.getsitepackages() + [sysconfig.get_paths()['purelib']]
  with open(os.path.join(purelib, 'shared_site_packages.pth'), 'w') as f:
    f.write('\n'.join(dict.fromkeys(shared)) + '\n')
  return python


def _source_copy(tmp_path):
  src = tmp_path / 'src'
  src.mkdir()
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(REPO, name), src / name)
  shutil.copytree(os.path.join(REPO, 'meta_align_jax'), src / 'meta_align_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  return src


@pytest.mark.slow
@pytest.mark.parametrize('editable', [True, False], ids=['editable', 'wheel'])
def test_install_into_fresh_venv_and_import_from_outside(tmp_path, editable):
  try:
    importlib.metadata.distribution('meta_align_jax')
    pytest.skip('meta_align_jax is installed in the test environment, which the fresh venv sees')
  except importlib.metadata.PackageNotFoundError:
    pass
  python, src = _venv(tmp_path), _source_copy(tmp_path)
  outside = tmp_path / 'elsewhere'
  outside.mkdir()
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  # Not importable before the install (the repository is not on the path from here).
  before = subprocess.run([str(python), '-c', 'import meta_align_jax'], cwd=outside, env=env,
                          capture_output=True, text=True)
  assert before.returncode != 0 and 'ModuleNotFoundError' in before.stderr
  cmd = [str(python), '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
         '--no-index'] + (['-e'] if editable else []) + [str(src)]
  install = subprocess.run(cmd, cwd=outside, env=env, capture_output=True, text=True,
                           timeout=600)
  assert install.returncode == 0, install.stderr[-3000:]
  out = subprocess.run([str(python), '-c', _CHECK], cwd=outside, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = dict(line.split(' ', 1) for line in out.stdout.strip().splitlines())
  where = os.path.realpath(lines['FILE'])
  if editable:
    assert where.startswith(os.path.realpath(src))
  else:
    assert where.startswith(os.path.realpath(tmp_path / 'venv'))
  assert lines['TF'] == 'False'   # the core (the package's public API) imports without TensorFlow
  assert set(CORE) <= set(lines['CORE'].split())
  assert set(DATA) <= set(lines['DATA'].split())
  assert 'tensorflow-cpu' not in lines['CORE']
