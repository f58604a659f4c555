"""Tests of the real-data TFDS builders (meta_align_jax/data/builders).

Each builder is prepared offline into a temporary data_dir from small dummy copies written here
in its documented layout. FSDD and Omniglot are also checked on the real copies in the repo's
sibling `shared/data` when present (skipped otherwise); the full FSDD build is marked slow.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import types
import zipfile

import numpy as np
import pytest
import soundfile
from PIL import Image, ImageDraw

from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.builders import catalog
from meta_align_jax.data.builders import cmu_wilderness
from meta_align_jax.data.builders import esc50
from meta_align_jax.data.builders import fsdd
from meta_align_jax.data.builders import omniglot
from meta_align_jax.data.builders import sklearn_digits
from meta_align_jax.data.builders import yummly28k
from meta_align_jax.data.tfsetup import configure, tfds

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


@pytest.fixture(scope='module', autouse=True)
def _quiet_tfds():
  configure()


def build(cls, data_dir, manual_dir=None, *, config=None, max_examples=None):
  kwargs = {'config': config} if config else {}
  builder = cls(data_dir=os.fspath(data_dir), **kwargs)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir) if manual_dir else None, try_download_gcs=False,
      max_examples_per_split=max_examples))
  return builder


def load(builder) -> dict[str, np.ndarray]:
  """The 'train' split as numpy arrays, ordered by example_id."""
  ds = builder.as_dataset(split='train', batch_size=-1, shuffle_files=False)
  arrays = tfds.as_numpy(ds)
  order = np.argsort(arrays['example_id'], kind='stable')
  return {k: v[order] for k, v in arrays.items()}


def write_wav(path: pathlib.Path, seconds: float, rate: int, freq: float) -> np.ndarray:
  path.parent.mkdir(parents=True, exist_ok=True)
  t = np.arange(int(seconds * rate)) / rate
  wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
  soundfile.write(path, wave, rate, subtype='PCM_16')
  return wave


def expected_log_mel(path, frames, seconds):
  wave, rate = soundfile.read(path, dtype='float32')
  return features.log_mel(wave, rate, frames=frames, seconds=seconds)


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


# --- ESC-50 --------------------------------------------------------------------------------


def make_esc50(root: pathlib.Path, categories=('dog', 'rain', 'siren'), targets=(0, 10, 42)):
  rows = []
  for (category, target) in zip(categories, targets):
    for take, fold in (('A', 1), ('B', 5)):
      name = f'{fold}-{100 + target}-{take}-{target}.wav'
      write_wav(root / 'audio' / name, 0.4, 44100, 200 + 20 * target)
      rows.append([name, fold, target, category, str(target == 0), f'{100 + target}', take])
  (root / 'meta').mkdir(parents=True, exist_ok=True)
  with open(root / 'meta' / 'esc50.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(esc50.COLUMNS)
    writer.writerows(reversed(rows))
  return root


def test_esc50_dummy_copy(tmp_path):
  root = make_esc50(tmp_path / 'manual' / 'ESC-50-master')
  builder = build(esc50.Esc50, tmp_path / 'data', tmp_path / 'manual')
  assert builder.info.features['label'].names == ['dog', 'rain', 'siren']
  a = load(builder)
  assert a['audio'].shape == (6, 160, 40) and a['audio'].dtype == np.float32
  np.testing.assert_array_equal(a['label'], [0, 1, 2, 0, 1, 2])  # rows sorted by filename
  np.testing.assert_array_equal(a['fold'], [1, 1, 1, 5, 5, 5])
  np.testing.assert_array_equal(a['esc10'], [True, False, False, True, False, False])
  np.testing.assert_allclose(a['audio'][1], expected_log_mel(root / 'audio' / '1-110-A-10.wav',
                                                             160, 5.0), atol=1e-6)
  assert not a['audio'][1, 60:].any()  # 0.4 s of sound, then silence


def test_esc50_incomplete(tmp_path):
  root = make_esc50(tmp_path / 'manual')
  (root / 'audio' / '5-142-B-42.wav').unlink()
  with pytest.raises(_common.ManualDirError, match=r'audio/5-142-B-42\.wav'):
    build(esc50.Esc50, tmp_path / 'data', root)
  (root / 'meta' / 'esc50.csv').write_text('filename,category\n')
  with pytest.raises(_common.ManualDirError, match='esc50.csv'):
    build(esc50.Esc50, tmp_path / 'data', root)


# --- Yummly-28K ----------------------------------------------------------------------------


RECIPES = {
    '00001': ('Pasta al pomodoro', ['Italian'], ['Main Dishes'],
              ['400 g spaghetti', '2 cups tomato sauce', 'fresh basil']),
    '00002': ('Tacos', ['Mexican'], ['Main Dishes'], ['8 tortillas', '1 lb beef', 'salsa']),
    '00003': ('Tiramisu', ['Italian', 'Dessert'], ['Desserts'],
              ['mascarpone', 'espresso', '2 cups ladyfingers']),
    '00004': ('Plain toast', [], ['Breakfast and Brunch'], ['bread', 'butter']),
    '00012': ('Quesadilla', ['Mexican'], [], ['2 tortillas', 'cheese', 'salsa']),
}


def make_yummly(root: pathlib.Path):
  (root / yummly28k.META_DIR).mkdir(parents=True)
  (root / yummly28k.IMAGE_DIR).mkdir(parents=True)
  for k, (number, (name, cuisine, course, lines)) in enumerate(RECIPES.items()):
    meta = {'name': name, 'ingredientLines': lines, 'id': f'recipe-{number}',
            'attributes': {'cuisine': cuisine, 'course': course}}
    (root / yummly28k.META_DIR / f'meta{number}.json').write_text(json.dumps(meta))
    size = [(80, 60), (50, 90), (64, 64), (120, 120), (100, 70)][k]
    Image.new('RGB', size, (40 * k, 255 - 40 * k, 128)).save(
        root / yummly28k.IMAGE_DIR / f'img{number}.jpg', quality=95)
  (root / yummly28k.META_DIR / 'merged_file.json').write_text('[]')  # ignored
  return root


def test_yummly28k_dummy_copy(tmp_path):
  make_yummly(tmp_path / 'manual' / 'Yummly28K')
  builder = build(yummly28k.Yummly28k, tmp_path / 'data', tmp_path / 'manual')
  assert builder.info.features['label'].names == ['Italian', 'Mexican']
  a = load(builder)
  np.testing.assert_array_equal(a['example_id'], [1, 2, 3, 12])  # no cuisine: left out
  np.testing.assert_array_equal(a['label'], [0, 1, 0, 1])
  assert a['text'].shape == (4, 64) and a['text'].dtype == np.int32
  assert a['image'].shape == (4, 64, 64, 3) and a['image'].dtype == np.uint8
  vocab = _common.vocabulary(builder)
  assert vocab.words[:2] == ['<pad>', '<unk>'] and len(vocab) <= yummly28k.MAX_VOCAB
  words = [vocab.words[i] for i in a['text'][0] if i]
  assert words == features.tokenize(' '.join(RECIPES['00001'][3]))
  assert not (a['text'] == features.UNK_ID).any()
  # Each image is its own recipe's (solid colours survive the crop and resize).
  np.testing.assert_allclose(a['image'][1].reshape(-1, 3).mean(0), (40, 215, 128), atol=3)
  # The vocabulary survives reloading the prepared dataset.
  reloaded = yummly28k.Yummly28k(data_dir=os.fspath(tmp_path / 'data'))
  assert _common.vocabulary(reloaded).words == vocab.words


def test_yummly28k_course_config_and_missing_image(tmp_path):
  root = make_yummly(tmp_path / 'manual')
  builder = build(yummly28k.Yummly28k, tmp_path / 'data', root, config='course')
  assert builder.info.features['label'].names == [
      'Breakfast and Brunch', 'Desserts', 'Main Dishes']
  assert builder.info.splits['train'].num_examples == 4
  (root / yummly28k.IMAGE_DIR / 'img00002.jpg').unlink()
  with pytest.raises(_common.ManualDirError, match='img00002.jpg'):
    build(yummly28k.Yummly28k, tmp_path / 'data2', root)


# --- CMU Wilderness (festvox read speech) --------------------------------------------------


def make_wilderness(root: pathlib.Path):
  texts = {
      'AAAXYZ': {'AAAXYZ_B01_0001': 'In the beginning was the word',
                 'AAAXYZ_B01_0002': 'and the word was with God',
                 'AAAXYZ_B01_0003': 'transcribed but never recorded'},
      'BBBQRS': {'BBBQRS_B01_0001': 'Au commencement était la Parole',
                 'BBBQRS_B01_0002': 'et la Parole était avec Dieu'},
  }
  for k, (lang, utts) in enumerate(texts.items()):
    base = root / lang / ('aligned' if k else '')
    lines = []
    for j, (utt, text) in enumerate(utts.items()):
      if 'never recorded' not in text:
        write_wav(base / 'wav' / f'{utt}.wav', 1.0 + 1.5 * j, 16000, 150 + 50 * j)
      lines.append(f'( {utt} "{text}" -1.{j}5 )\n')
    (base / 'etc').mkdir(parents=True, exist_ok=True)
    (base / 'etc' / cmu_wilderness.TRANSCRIPTS).write_text(''.join(lines), encoding='utf-8')
  (root / 'README').write_text('not a language')
  return root


def test_cmu_wilderness_dummy_copy(tmp_path):
  root = make_wilderness(tmp_path / 'manual')
  builder = build(cmu_wilderness.CmuWilderness, tmp_path / 'data', root)
  assert builder.builder_config.name == 'max500'
  assert builder.info.features['label'].names == ['AAAXYZ', 'BBBQRS']
  a = load(builder)
  assert a['speech'].shape == (4, 64, 40) and a['speech'].dtype == np.float32
  assert a['text'].shape == (4, 64) and a['text'].dtype == np.int32
  np.testing.assert_array_equal(a['label'], [0, 0, 1, 1])
  assert [u.decode() for u in a['utterance']] == [
      'AAAXYZ_B01_0001', 'AAAXYZ_B01_0002', 'BBBQRS_B01_0001', 'BBBQRS_B01_0002']
  vocab = _common.vocabulary(builder)
  assert [vocab.words[i] for i in a['text'][3] if i] == ['et', 'la', 'parole', 'etait', 'avec',
                                                         'dieu']
  wav = root / 'BBBQRS' / 'aligned' / 'wav' / 'BBBQRS_B01_0002.wav'  # 2.5 s: first 2 s kept
  np.testing.assert_allclose(a['speech'][3], expected_log_mel(wav, 64, 2.0), atol=1e-5)


def test_cmu_wilderness_cap_and_errors(tmp_path):
  root = make_wilderness(tmp_path / 'manual')
  utts = cmu_wilderness.list_utterances(root, max_per_language=1)
  assert [u.utt_id for u in utts] == ['AAAXYZ_B01_0001', 'BBBQRS_B01_0001']
  (root / 'AAAXYZ' / 'etc' / cmu_wilderness.TRANSCRIPTS).write_text('AAAXYZ_B01_0001 words\n')
  with pytest.raises(ValueError, match='festvox transcript line'):
    cmu_wilderness.list_utterances(root, None)
  (root / 'AAAXYZ' / 'etc' / cmu_wilderness.TRANSCRIPTS).unlink()
  with pytest.raises(_common.ManualDirError, match=r'AAAXYZ/etc/txt\.done\.data'):
    build(cmu_wilderness.CmuWilderness, tmp_path / 'data', root)


# --- TFDS catalog wrappers -----------------------------------------------------------------


def fake_catalog(name: str, splits: dict[str, list[dict]], label_names=None):
  """The catalog builder `name` with its archives replaced by in-memory examples."""
  base = tfds.builder_cls(name)

  def body(ns):
    ns['name'] = name
    ns['__module__'] = __name__

    def _split_generators(self, dl_manager):
      del dl_manager
      for key, names in (label_names or {}).items():
        self.info.features[key].names = names
      return {s: self._generate_examples(examples) for s, examples in splits.items()}

    def _generate_examples(self, examples):
      yield from enumerate(examples)

    ns['_split_generators'] = _split_generators
    ns['_generate_examples'] = _generate_examples

  return types.new_class(f'Fake{base.__name__}', (base,), {'skip_registration': True}, body)


def test_catalog_not_prepared_says_where_data_goes(tmp_path):
  for cls, archive in ((catalog.Cifar10FromCatalog, 'cifar-10-binary.tar.gz'),
                       (catalog.SpeechCommandsFromCatalog, 'speech_commands_v0.02.tar.gz')):
    with pytest.raises(_common.ManualDirError) as e:
      build(cls, tmp_path / 'data', tmp_path / 'manual')
    message = str(e.value)
    assert archive in message and 'not prepared' in message
    assert str(tmp_path / 'data') in message and 'Nothing is downloaded' in message
  assert not (tmp_path / 'data' / 'cifar10_from_catalog' / '1.0.0').exists()


def test_cifar_from_prepared_catalog(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
  names10 = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
             'truck']
  fake_catalog('cifar10', {
      'train': [{'id': f'train_{i}', 'image': images[i], 'label': i} for i in range(5)],
      'test': [{'id': f'test_{i}', 'image': images[5 + i], 'label': 9} for i in range(2)],
  }, {'label': names10})(data_dir=os.fspath(tmp_path)).download_and_prepare()
  builder = build(catalog.Cifar10FromCatalog, tmp_path)
  assert builder.info.features['label'].names == names10
  a = load(builder)
  assert a['image'].shape == (7, 32, 32, 3) and a['image'].dtype == np.uint8
  np.testing.assert_array_equal(np.sort(a['label']), [0, 1, 2, 3, 4, 9, 9])
  for image, label in zip(a['image'], a['label']):  # each image kept with its own label
    j = next(j for j in range(7) if np.array_equal(images[j], image))
    assert label == (j if j < 5 else 9)

  fine = [f'fine{i:02d}' for i in range(100)]
  coarse = [f'coarse{i:02d}' for i in range(20)]
  fake_catalog('cifar100', {
      split: [{'id': f'{split}_0', 'image': images[k], 'label': 42 + k, 'coarse_label': 7}]
      for k, split in enumerate(('train', 'test'))
  }, {'label': fine, 'coarse_label': coarse})(data_dir=os.fspath(tmp_path)).download_and_prepare()
  a = load(build(catalog.Cifar100FromCatalog, tmp_path))
  assert sorted(a['label'].tolist()) == [42, 43]
  assert {s.decode() for s in a['superclass']} == {'coarse07'}


def test_speech_commands_from_prepared_catalog(tmp_path):
  rng = np.random.default_rng(1)
  clips = (rng.normal(size=(4, 16000)) * 3000).astype(np.int16)
  fake_catalog('speech_commands', {
      'train': [{'audio': clips[0], 'label': 0}, {'audio': clips[1], 'label': 10},  # _silence_
                {'audio': clips[2], 'label': 11}],                                 # _unknown_
      'validation': [{'audio': clips[3], 'label': 9}],
      'test': [{'audio': clips[0][:8000], 'label': 4}],
  })(data_dir=os.fspath(tmp_path)).download_and_prepare()
  builder = build(catalog.SpeechCommandsFromCatalog, tmp_path)
  assert builder.info.features['label'].names == list(catalog.KEYWORDS)
  a = load(builder)
  assert a['speech'].shape == (3, 32, 40) and a['speech'].dtype == np.float32
  np.testing.assert_array_equal(a['label'], [0, 9, 4])  # train, validation, test order
  np.testing.assert_allclose(
      a['speech'][1], features.log_mel(clips[3] / 32768.0, 16000, frames=32, seconds=1.0),
      atol=1e-5)
