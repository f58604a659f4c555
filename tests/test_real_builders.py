"""Tests of the real-data TFDS builders (meta_align_jax/data/builders): the contract of every
builder, scikit-learn digits, FSDD and Omniglot (the others: `test_more_builders.py`).

Each builder is prepared offline into a temporary data_dir from small dummy copies written here
in its documented layout. FSDD and Omniglot are also checked on the real copies in the repo's
sibling `shared/data` when present (skipped otherwise); the full FSDD build is marked slow.
"""

from __future__ import annotations

import csv
import io
import os
import pathlib
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw
import soundfile

from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.builders import catalog  # noqa: F401  (registers its builders)
from meta_align_jax.data.builders import cmu_wilderness  # noqa: F401  (registers its builder)
from meta_align_jax.data.builders import esc50  # noqa: F401  (registers its builder)
from meta_align_jax.data.builders import fsdd
from meta_align_jax.data.builders import omniglot
from meta_align_jax.data.builders import sklearn_digits
from meta_align_jax.data.builders import yummly28k  # noqa: F401  (registers its builder)
from meta_align_jax.data.tfsetup import tfds
from builder_helpers import (build, expected_log_mel, load, quiet_tfds,  # noqa: F401  (fixture)
                             write_wav)

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data'
REAL_FSDD = SHARED_DATA / 'fsdd'
REAL_OMNIGLOT = SHARED_DATA / 'omniglot'
needs_fsdd = pytest.mark.skipif(not (REAL_FSDD / 'recordings').is_dir(),
                                reason=f'no real FSDD copy at {REAL_FSDD}')
needs_omniglot = pytest.mark.skipif(
    not (REAL_OMNIGLOT / omniglot.SMALL_ZIPS[0]).is_file(),
    reason=f'no real Omniglot zips at {REAL_OMNIGLOT}')

REAL_BUILDERS = {
    'fsdd': ('speech', (32, 40), np.float32),
    'sklearn_digits': ('image', (8, 8, 1), np.uint8),
    'omniglot': ('image', (28, 28, 1), np.uint8),
    'esc50': ('audio', (160, 40), np.float32),
    'yummly28k': ('text', (64,), np.int32),
    'cmu_wilderness': ('speech', (64, 40), np.float32),
    'cifar10': ('image', (32, 32, 3), np.uint8),
    'cifar100': ('image', (32, 32, 3), np.uint8),
    'speech_commands': ('speech', (32, 40), np.float32),
}


# --- Every builder -------------------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(REAL_BUILDERS))
def test_registered_with_contract_features(name, tmp_path):
  cls = registry.get(name)
  assert issubclass(cls, tfds.core.GeneratorBasedBuilder)
  info = cls(data_dir=os.fspath(tmp_path)).info
  assert info.description and info.citation and str(info.version)
  feature, shape, dtype = REAL_BUILDERS[name]
  assert isinstance(info.features['label'], tfds.features.ClassLabel)
  assert info.features['example_id'].np_dtype == np.int64
  assert info.features[feature].shape == shape
  assert info.features[feature].np_dtype == dtype
  if name != 'sklearn_digits':
    assert cls.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_tfds_names_do_not_shadow_the_catalog():
  for name in ('omniglot', 'cifar10', 'cifar100', 'speech_commands'):
    assert registry.get(name).name != name
    assert tfds.builder_cls(name) is not registry.get(name)


# --- scikit-learn digits -------------------------------------------------------------------


def test_sklearn_digits(tmp_path):
  from sklearn import datasets
  digits = datasets.load_digits()
  a = load(build(sklearn_digits.SklearnDigits, tmp_path))
  assert a['image'].shape == (1797, 8, 8, 1) and a['image'].dtype == np.uint8
  np.testing.assert_array_equal(a['example_id'], np.arange(1797))
  np.testing.assert_array_equal(a['label'], digits.target)
  np.testing.assert_array_equal(a['image'][..., 0],
                                np.rint(digits.images * 255 / 16).astype(np.uint8))
  assert a['image'].max() == 255


# --- FSDD ----------------------------------------------------------------------------------


def make_fsdd(root: pathlib.Path, speakers=('ann', 'bob'), takes=2, digits=(0, 3, 9)):
  for d in digits:
    for s in speakers:
      for i in range(takes):
        write_wav(root / 'recordings' / f'{d}_{s}_{i}.wav', 0.3 + 0.5 * i, 8000, 300 + 100 * d)
  return root


def test_fsdd_dummy_copy_in_subdirectory(tmp_path):
  make_fsdd(tmp_path / 'manual' / 'fsdd')
  builder = build(fsdd.Fsdd, tmp_path / 'data', tmp_path / 'manual')
  assert builder.info.features['label'].names == list(_common.DIGIT_NAMES)
  a = load(builder)
  assert a['speech'].shape == (12, 32, 40) and a['speech'].dtype == np.float32
  np.testing.assert_array_equal(a['label'], np.repeat([0, 3, 9], 4))
  assert [s.decode() for s in a['speaker'][:4]] == ['ann', 'ann', 'bob', 'bob']
  np.testing.assert_array_equal(a['take'][:4], [0, 1, 0, 1])
  path = tmp_path / 'manual' / 'fsdd' / 'recordings' / '3_bob_1.wav'
  np.testing.assert_allclose(a['speech'][7], fsdd.front_end(*soundfile.read(path, dtype='float32')),
                             atol=1e-6)
  v1 = load(build(fsdd.Fsdd, tmp_path / 'data', tmp_path / 'manual', config='v1'))  # old features
  np.testing.assert_allclose(v1['speech'][7], expected_log_mel(path, 32, 1.0), atol=1e-6)


def test_fsdd_missing_or_incomplete(tmp_path):
  with pytest.raises(_common.ManualDirError, match='recordings'):
    build(fsdd.Fsdd, tmp_path / 'data', tmp_path / 'nowhere')
  (tmp_path / 'empty' / 'other').mkdir(parents=True)
  with pytest.raises(_common.ManualDirError, match=r'recordings/') as e:
    build(fsdd.Fsdd, tmp_path / 'data', tmp_path / 'empty')
  assert str(tmp_path / 'empty') in str(e.value)
  root = make_fsdd(tmp_path / 'partial')
  (root / 'metadata.csv').write_text('filename,digit\n0_ann_0.wav,0\n5_ann_0.wav,5\n')
  with pytest.raises(_common.ManualDirError, match=r'5_ann_0\.wav'):
    build(fsdd.Fsdd, tmp_path / 'data', root)


@needs_fsdd
def test_fsdd_real_copy(tmp_path):
  recordings = fsdd.list_recordings(REAL_FSDD)
  assert len(recordings) == 3000
  assert np.bincount([r.digit for r in recordings]).tolist() == [300] * 10
  assert len({r.speaker for r in recordings}) == 6
  assert not fsdd._missing(REAL_FSDD)  # metadata.csv and the recordings agree
  # Build from take 0 of every digit and speaker (60 real files, linked into a manual dir).
  subset = tmp_path / 'manual' / 'recordings'
  subset.mkdir(parents=True)
  chosen = [r for r in recordings if r.index == 0]
  for r in chosen:
    (subset / r.path.name).symlink_to(r.path.resolve())
  a = load(build(fsdd.Fsdd, tmp_path / 'data', tmp_path / 'manual'))
  assert a['speech'].shape == (60, 32, 40)
  np.testing.assert_array_equal(a['label'], [r.digit for r in chosen])
  assert [s.decode() for s in a['speaker']] == [r.speaker for r in chosen]
  for i in (0, 31, 59):
    np.testing.assert_allclose(
        a['speech'][i], fsdd.front_end(*soundfile.read(chosen[i].path, dtype='float32')),
        atol=1e-6)
  assert 0.0 <= a['speech'].min() and a['speech'].mean() > 0.05


@needs_fsdd
@pytest.mark.slow
def test_fsdd_real_full_build(tmp_path):
  a = load(build(fsdd.Fsdd, tmp_path / 'data', SHARED_DATA))  # finds SHARED_DATA/fsdd
  assert a['speech'].shape == (3000, 32, 40)
  assert np.bincount(a['label']).tolist() == [300] * 10


# --- Omniglot ------------------------------------------------------------------------------


def omniglot_png(seed: int) -> bytes:
  image = Image.new('1', (105, 105), 1)  # white background, black strokes, as the originals
  ImageDraw.Draw(image).line([(10 + seed, 20), (90, 80 - seed)], fill=0, width=6)
  buf = io.BytesIO()
  image.save(buf, format='PNG')
  return buf.getvalue()


def make_omniglot_zip(path: pathlib.Path, chars: dict[str, int], drawers=3):
  path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(path, 'w') as zf:
    for char, image_id in chars.items():
      for d in range(1, drawers + 1):
        zf.writestr(f'{path.stem}/{char}/{image_id:04d}_{d:02d}.png', omniglot_png(d))


def test_omniglot_dummy_small_zips_dedupe(tmp_path):
  root = tmp_path / 'manual'
  make_omniglot_zip(root / omniglot.SMALL_ZIPS[0],
                    {'Greek/character01': 394, 'Balinese/character01': 108})
  make_omniglot_zip(root / omniglot.SMALL_ZIPS[1],
                    {'Greek/character01': 394, 'Korean/character02': 700})
  builder = build(omniglot.Omniglot28, tmp_path / 'data', root)
  names = builder.info.features['label'].names
  assert names == ['Balinese/character01', 'Greek/character01', 'Korean/character02']
  a = load(builder)
  assert a['image'].shape == (9, 28, 28, 1) and a['image'].dtype == np.uint8
  assert np.bincount(a['label']).tolist() == [3, 3, 3]
  np.testing.assert_array_equal(a['drawer'], [1, 2, 3] * 3)
  assert a['image'].max() == 255 and a['image'].mean() < 64  # bright strokes on black
  np.testing.assert_array_equal(a['image'][0], omniglot.decode(omniglot_png(1)))


def test_omniglot_zip_sets(tmp_path):
  with pytest.raises(_common.ManualDirError, match='images_evaluation.zip'):
    build(omniglot.Omniglot28, tmp_path / 'd0', tmp_path / 'nowhere')
  root = tmp_path / 'manual' / 'omniglot'
  make_omniglot_zip(root / omniglot.FULL_ZIPS[0], {'Greek/character01': 394}, drawers=2)
  with pytest.raises(_common.ManualDirError, match='images_background_small1.zip'):
    build(omniglot.Omniglot28, tmp_path / 'd1', tmp_path / 'manual')
  make_omniglot_zip(root / omniglot.SMALL_ZIPS[0], {'Greek/character01': 394})
  make_omniglot_zip(root / omniglot.SMALL_ZIPS[1], {'Latin/character01': 500})
  builder = build(omniglot.Omniglot28, tmp_path / 'd2', tmp_path / 'manual')
  assert builder.info.features['label'].names == ['Greek/character01', 'Latin/character01']
  make_omniglot_zip(root / omniglot.FULL_ZIPS[1], {'Tengwar/character03': 1500}, drawers=2)
  builder = build(omniglot.Omniglot28, tmp_path / 'd3', tmp_path / 'manual')  # full set wins
  assert builder.info.features['label'].names == ['Greek/character01', 'Tengwar/character03']
  assert builder.info.splits['train'].num_examples == 4


@needs_omniglot
def test_omniglot_real_copy(tmp_path):
  builder = build(omniglot.Omniglot28, tmp_path / 'data', SHARED_DATA)  # finds .../omniglot
  names = builder.info.features['label'].names
  assert len(names) == 242
  a = load(builder)
  assert a['image'].shape == (4840, 28, 28, 1)
  assert np.bincount(a['label']).tolist() == [20] * 242
  assert len({s.decode() for s in a['alphabet']}) == 8
  with open(REAL_OMNIGLOT / 'omniglot_small_index.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  kept = [r for r in rows if not r['duplicate_of']]
  assert len(rows) == 2720 + 3120 and len(kept) == 4840
  assert sorted({r['class_id'] for r in kept}) == names
  # A decoded example equals the zip member decoded directly.
  members = omniglot.list_members(REAL_OMNIGLOT, omniglot.SMALL_ZIPS)
  m = members[1234]
  with zipfile.ZipFile(m.zip_path) as zf:
    np.testing.assert_array_equal(a['image'][1234], omniglot.decode(zf.read(m.member)))
  assert names[a['label'][1234]] == m.label
  assert 10 < a['image'].mean() < 60 and a['image'].max() == 255
