"""ESC-50 environmental sounds (50 classes, 2,000 clips of 5 s), as log-mel spectrograms.

Read from a local copy of the ESC-50 repository (`audio/*.wav` + `meta/esc50.csv`). Each clip
becomes a 5 s log-mel `[160, 40]` ('audio'); classes are the csv's `category` names, ordered by
its `target` index. The repository is about 860 MB and licensed CC BY-NC 3.0 (non-commercial).
"""

from __future__ import annotations

import csv
import pathlib

import numpy as np

from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.tfsetup import tfds

FRAMES, SECONDS, N_MELS = 160, 5.0, 40
COLUMNS = ('filename', 'fold', 'target', 'category', 'esc10', 'src_file', 'take')

_LAYOUT = """\
  <manual_dir>/     (or <manual_dir>/esc50/, <manual_dir>/ESC-50/, <manual_dir>/ESC-50-master/)
    audio/<fold>-<src_file>-<take>-<target>.wav   2,000 clips, 5 s, 44.1 kHz mono
    meta/esc50.csv               columns filename,fold,target,category,esc10,src_file,take
Get it with: git clone https://github.com/karolpiczak/ESC-50 <manual_dir>/esc50"""
_SUBDIRS = ('esc50', 'ESC-50', 'ESC-50-master')


def read_meta(root: pathlib.Path) -> list[dict[str, str]]:
  """The rows of `root/meta/esc50.csv`, sorted by filename."""
  with (root / 'meta' / 'esc50.csv').open(newline='') as f:
    reader = csv.DictReader(f)
    lacking = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if lacking:
      raise _common.ManualDirError(
          f'esc50: {root / "meta" / "esc50.csv"} lacks the columns {lacking}; it has '
          f'{reader.fieldnames}.\nExpected layout:\n{_LAYOUT}')
    return sorted(reader, key=lambda row: row['filename'])


def class_names(rows: list[dict[str, str]]) -> list[str]:
  """Category names ordered by their `target` index; checks the two agree."""
  by_target = {}
  for row in rows:
    target, category = int(row['target']), row['category']
    if by_target.setdefault(target, category) != category:
      raise ValueError(f'esc50: target {target} is both {by_target[target]!r} and {category!r} in '
                       'meta/esc50.csv.')
  names = [by_target[t] for t in sorted(by_target)]
  if len(set(names)) != len(names):
    raise ValueError(f'esc50: a category has several targets in meta/esc50.csv: {names}')
  return names


def _missing(root: pathlib.Path) -> list[str]:
  if not (root / 'meta' / 'esc50.csv').is_file():
    return ['meta/esc50.csv']
  if not (root / 'audio').is_dir():
    return ['audio/']
  present = {p.name for p in (root / 'audio').iterdir()}
  with (root / 'meta' / 'esc50.csv').open(newline='') as f:
    reader = csv.DictReader(f)
    if 'filename' not in (reader.fieldnames or ()):
      return ['a "filename" column in meta/esc50.csv']
    listed = [row['filename'] for row in reader]
  if not listed:
    return ['rows in meta/esc50.csv']
  return [f'audio/{name} (listed in meta/esc50.csv)' for name in listed if name not in present]


@registry.register('esc50')
class Esc50(tfds.core.GeneratorBasedBuilder):
  """ESC-50: 'audio' log-mel `[160, 40]` of 5 s clips, 50 sound categories."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Log-mel [160, 40] of 5 s (features.log_mel), all clips.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Expected layout:\n{_LAYOUT}'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'ESC-50: 2,000 five-second environmental recordings in 50 classes (animals, natural '
            'soundscapes, human non-speech, domestic and urban sounds), 40 per class, in 5 '
            f'folds. Each clip is converted to a log-mel spectrogram [{FRAMES}, {N_MELS}] '
            f'({SECONDS:g} s, meta_align_jax.data.features.log_mel). Labels are the category '
            "names ordered by ESC-50's target index; 'fold' and 'esc10' (member of the ESC-10 "
            "subset) are kept. A single 'train' split holds every clip."),
        features=tfds.features.FeaturesDict({
            'audio': tfds.features.Tensor(shape=(FRAMES, N_MELS), dtype=np.float32),
            'label': tfds.features.ClassLabel(),  # names come from meta/esc50.csv
            'example_id': tfds.features.Scalar(dtype=np.int64),
            'fold': tfds.features.Scalar(dtype=np.int32),
            'esc10': tfds.features.Scalar(dtype=np.bool_),
        }),
        supervised_keys=('audio', 'label'),
        homepage='https://github.com/karolpiczak/ESC-50',
        license='CC BY-NC 3.0',
        citation="""\
@inproceedings{piczak2015dataset,
  title     = {{ESC}: {Dataset} for {Environmental Sound Classification}},
  author    = {Piczak, Karol J.},
  booktitle = {Proceedings of the 23rd {Annual ACM Conference} on {Multimedia}},
  pages     = {1015--1018},
  year      = {2015},
  publisher = {ACM Press},
  doi       = {10.1145/2733373.2806390}
}""",
    )

  def _split_generators(self, dl_manager):
    root = _common.find_manual_dir(dl_manager, dataset='esc50', layout=_LAYOUT, subdirs=_SUBDIRS,
                                   missing=_missing)
    rows = read_meta(root)
    _common.set_label_names(self.info, class_names(rows))
    return {'train': self._generate_examples(root, rows)}

  def _generate_examples(self, root: pathlib.Path, rows: list[dict[str, str]]):
    label_feature = self.info.features['label']
    for example_id, row in enumerate(rows):
      yield row['filename'], {
          'audio': _common.log_mel_of_file(root / 'audio' / row['filename'], frames=FRAMES,
                                           seconds=SECONDS, n_mels=N_MELS),
          'label': label_feature.str2int(row['category']),
          'example_id': example_id,
          'fold': int(row['fold']),
          'esc10': row['esc10'].strip().lower() == 'true',
      }
