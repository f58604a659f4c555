"""The data side of issue 19: TFDS registration on import, a corrupt image named by its zip member,
and dataset builds that never fork this (JAX-threaded) process."""

import os
import subprocess
import sys
import warnings
import zipfile

import jax
import numpy as np
import pytest

pytest.importorskip('tensorflow_datasets')

from meta_align_jax.data.builders import omniglot, synthetic_concepts  # noqa: E402
from tests.fakes import REPO  # noqa: E402
from tests.test_real_builders import build, make_omniglot_zip  # noqa: E402


def test_import_meta_align_jax_data_registers_tfds_builders(tmp_path):
  code = ('import meta_align_jax.data, tensorflow_datasets as tfds, sys; '
          f"b = tfds.builder('synthetic_concepts/small', data_dir={str(tmp_path)!r}); "
          "print(type(b).__name__, 'builders' in sys.modules['meta_align_jax.data'].__dict__)")
  out = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split() == ['SyntheticConcepts', 'True']


def test_corrupt_png_names_the_zip_member(tmp_path):
  root = tmp_path / 'manual'
  make_omniglot_zip(root / omniglot.SMALL_ZIPS[0], {'Greek/character01': 394})
  make_omniglot_zip(root / omniglot.SMALL_ZIPS[1], {'Latin/character01': 500})
  with zipfile.ZipFile(root / omniglot.SMALL_ZIPS[1], 'a') as zf:
    zf.writestr('images_background_small2/Latin/character01/0500_04.png', b'\x89PNG\r\n broken')
  with pytest.raises(Exception) as e:
    build(omniglot.Omniglot28, tmp_path / 'data', root)
  text = ''.join(str(x) for x in (e.value, e.value.__cause__, e.value.__context__))
  assert "'images_background_small2/Latin/character01/0500_04.png'" in text
  assert omniglot.SMALL_ZIPS[1] in text


def test_dataset_build_does_not_fork_a_jax_process(tmp_path, monkeypatch):
  """Workers come from a fork server: this process (JAX started) never calls os.fork."""
  jax.devices()   # JAX's backend and its threads have started
  forks = []
  real_fork = os.fork
  monkeypatch.setattr(os, 'fork', lambda: forks.append(1) or real_fork())
  builder = synthetic_concepts.SyntheticConcepts(data_dir=str(tmp_path), config='small',
                                                 num_workers=2)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    builder.download_and_prepare()
  assert not forks
  assert not [w for w in caught if 'fork' in str(w.message)]
  assert builder.info.splits['train'].num_examples == 64
  # The examples do not depend on the workers: one in-process build gives the same arrays.
  same = synthetic_concepts.SyntheticConcepts(data_dir=str(tmp_path / 'one'), config='small',
                                              num_workers=0)
  same.download_and_prepare()
  a, b = (builder.as_dataset(split='train', batch_size=-1) for builder in (builder, same))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  a, b = tfds.as_numpy(a), tfds.as_numpy(b)
  order_a, order_b = np.argsort(a['example_id']), np.argsort(b['example_id'])
  np.testing.assert_array_equal(a['image'][order_a], b['image'][order_b])
