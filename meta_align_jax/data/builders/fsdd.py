"""Free Spoken Digit Dataset (FSDD): spoken digits as log-mel spectrograms, from a local copy.

Classes are the digit words 'zero'..'nine', the same names as `sklearn_digits`, so the two pair
into a small real image -> speech task. Each recording (8 kHz, 0.1-2.3 s) becomes a 1 s log-mel
`[32, 40]` computed once when the dataset is prepared, by one of two front ends (builder configs):

  'default' (2.0.0)  `features.normalized_log_mel` at the recording's 8 kHz: 40 mel bands over
                     50 Hz - 4 kHz (none empty), level normalised per clip (dB re the clip's
                     peak), leading and trailing silence trimmed, the utterance centred, and the
                     clip's own noise floor around it instead of zeros.
  'v1'               the original front end, `features.log_mel`: resampled to 16 kHz, 40 mels up
                     to 8 kHz (9 bands above the recording's band stay empty), absolute level,
                     the first second cropped or zero-padded (the clip's length shows as zeros).
                     Kept to reproduce earlier results ('fsdd/v1').

docs/results/premise/digits_fsdd_before.json and digits_fsdd.json give the premise gate with each.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
import re

import numpy as np

from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.tfsetup import tfds

FRAMES, SECONDS, N_MELS = 32, 1.0, 40
_FILE_RE = re.compile(r'^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$')

_LAYOUT = """\
  <manual_dir>/                  (or <manual_dir>/fsdd/)
    recordings/{digit}_{speaker}_{index}.wav   e.g. 7_jackson_32.wav (3,000 files in v1.0.10)
    metadata.csv                 optional; when present, every `filename` it lists must exist
Get it with: git clone https://github.com/Jakobovski/free-spoken-digit-dataset <manual_dir>/fsdd"""


@dataclasses.dataclass(frozen=True, order=True)
class Recording:
  digit: int
  speaker: str
  index: int
  path: pathlib.Path = dataclasses.field(compare=False)


def list_recordings(root: pathlib.Path) -> list[Recording]:
  """The recordings under `root/recordings`, sorted by (digit, speaker, index)."""
  out = []
  for path in (root / 'recordings').iterdir():
    m = _FILE_RE.match(path.name)
    if m:
      out.append(Recording(int(m[1]), m[2], int(m[3]), path))
  return sorted(out)


def _missing(root: pathlib.Path) -> list[str]:
  recordings = root / 'recordings'
  if not recordings.is_dir():
    return ['recordings/']
  names = {p.name for p in recordings.iterdir() if _FILE_RE.match(p.name)}
  if not names:
    return ['recordings/{digit}_{speaker}_{index}.wav files']
  metadata = root / 'metadata.csv'
  if metadata.exists():
    with metadata.open(newline='') as f:
      reader = csv.DictReader(f)
      if 'filename' not in (reader.fieldnames or ()):
        return ['a "filename" column in metadata.csv']
      listed = [row['filename'] for row in reader]
    return [f'recordings/{n} (listed in metadata.csv)' for n in listed if n not in names]
  return []


def front_end(wave: np.ndarray, rate: int, kind: str = 'default') -> np.ndarray:
  """The 'speech' feature of one recording, float32 `[FRAMES, N_MELS]` (see the module doc)."""
  if kind == 'v1':
    # The part `_common` reads (SECONDS plus its margin).
    end = int(np.ceil((SECONDS + _common._READ_MARGIN_S) * rate))
    return features.log_mel(wave[:end], rate, frames=FRAMES, seconds=SECONDS, n_mels=N_MELS)
  if kind == 'default':
    return features.normalized_log_mel(wave, rate, frames=FRAMES, seconds=SECONDS,
                                       n_mels=N_MELS, fmin=50.0, fmax=min(4000.0, rate / 2))
  raise ValueError(f'Unknown FSDD front end {kind!r}: use default or v1.')


@dataclasses.dataclass(eq=False, kw_only=True)
class FsddConfig(tfds.core.BuilderConfig):
  front_end: str = 'default'


class Fsdd(tfds.core.GeneratorBasedBuilder):
  """Free Spoken Digit Dataset: 'speech' log-mel `[32, 40]`, digit-word labels."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {'1.0.0': 'Log-mel [32, 40] of 1 s (features.log_mel), all recordings.',
                   '2.0.0': "Builder configs: 'default' = the normalised front end "
                            "(features.normalized_log_mel); 'v1' = 1.0.0's features."}
  BUILDER_CONFIGS = [
      FsddConfig(name='default', front_end='default',
                 description='Per-clip normalised log-mel within the 4 kHz band, centred, '
                             'noise-floor padding.'),
      FsddConfig(name='v1', front_end='v1',
                 description='The 1.0.0 front end: 16 kHz log-mel, absolute level, zero padding.'),
  ]
  DEFAULT_CONFIG_NAME = 'default'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Expected layout:\n{_LAYOUT}'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Free Spoken Digit Dataset: recordings of the digits 0-9 spoken in English (8 kHz '
            'mono WAV, 6 speakers x 10 digits x 50 takes in v1.0.10). Each recording is '
            f'converted to a {SECONDS:g} s log-mel spectrogram [{FRAMES}, {N_MELS}] by the '
            f'{self.builder_config.front_end!r} front end (meta_align_jax.data.builders.fsdd). '
            'Labels are '
            "the digit words 'zero'..'nine'. A single 'train' split holds every recording; "
            "'take' is the upstream index (0-4 form the upstream test set)."),
        features=tfds.features.FeaturesDict({
            'speech': tfds.features.Tensor(shape=(FRAMES, N_MELS), dtype=np.float32),
            'label': tfds.features.ClassLabel(names=_common.DIGIT_NAMES),
            'example_id': tfds.features.Scalar(dtype=np.int64),
            'speaker': tfds.features.Text(),
            'take': tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=('speech', 'label'),
        homepage='https://github.com/Jakobovski/free-spoken-digit-dataset',
        license='CC BY-SA 4.0',
        citation="""\
@misc{jackson2018fsdd,
  author    = {Jackson, Zohar and Souza, C{\\'e}sar and Flaks, Jason and Pan, Yuxin and
               Nicolas, Hereman and Thite, Adhish},
  title     = {Jakobovski/free-spoken-digit-dataset: v1.0.8},
  publisher = {Zenodo},
  year      = {2018},
  doi       = {10.5281/zenodo.1342401},
  url       = {https://github.com/Jakobovski/free-spoken-digit-dataset}
}""",
    )

  def _split_generators(self, dl_manager):
    root = _common.find_manual_dir(dl_manager, dataset='fsdd', layout=_LAYOUT, subdirs=('fsdd',),
                                   missing=_missing)
    return {'train': self._generate_examples(list_recordings(root))}

  def _generate_examples(self, recordings: list[Recording]):
    for example_id, rec in enumerate(recordings):
      wave, rate = _common.read_audio(rec.path)
      yield rec.path.stem, {
          'speech': front_end(wave, rate, self.builder_config.front_end),
          'label': rec.digit,
          'example_id': example_id,
          'speaker': rec.speaker,
          'take': rec.index,
      }


registry.register('fsdd', Fsdd)
