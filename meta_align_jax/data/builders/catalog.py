"""CIFAR-10, CIFAR-100 and Speech Commands from the TFDS catalog, in this library's features.

These datasets come from the TFDS catalog builders ('cifar10', 'cifar100', 'speech_commands'),
whose own preparation downloads the original archives. Nothing here downloads anything: each
builder below reads the catalog dataset's prepared records from the same data_dir
(`config.data.data_dir`) and rewrites them with the contract's feature names and shapes:

  cifar10 / cifar100 -> 'image' uint8 [32, 32, 3] (as is), CIFAR-100 with its 100 fine labels
                        (the coarse superclass kept as 'superclass');
  speech_commands    -> 'speech' float32 [32, 40], log-mel of the 1 s clips (features.log_mel);
                        only the ten keywords (down, go, left, no, off, on, right, stop, up, yes):
                        the catalog's '_silence_' and '_unknown_' (25 other words pooled) are not
                        classes one can learn few-shot, and are left out.

The catalog dataset must be prepared already, or its original archives must sit in the manual
directory (`config.data.manual_dir`, or its subdirectory named after the dataset), in which case
the catalog builder is prepared from them offline first. Otherwise preparation fails with an error
naming the files and directories. The train and test splits (and validation, for Speech
Commands) all go into the single 'train' split; the episode pipeline makes class-disjoint splits.

TFDS names carry the suffix '_from_catalog' so they never shadow the catalog's own names; the
registry names are 'cifar10', 'cifar100' and 'speech_commands'.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np

from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.tfsetup import tfds

KEYWORDS = ('down', 'go', 'left', 'no', 'off', 'on', 'right', 'stop', 'up', 'yes')
FRAMES, SECONDS, N_MELS = 32, 1.0, 40
_INT16_SCALE = 1.0 / 32768.0


def catalog_builder(name: str, data_dir: os.PathLike | str) -> tfds.core.DatasetBuilder:
  """The TFDS catalog builder `name` over `data_dir` (its code only; no data is touched)."""
  return tfds.builder_cls(name)(data_dir=os.fspath(data_dir))


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  """`builder.is_prepared()`, without TFDS's warning about a version folder that is absent."""
  return os.path.isdir(os.fspath(builder.data_dir)) and builder.is_prepared()


def archive_names(builder: tfds.core.DatasetBuilder) -> list[str]:
  """File names of the archives the catalog builder downloads (from its registered checksums)."""
  return sorted({info.filename for info in builder.url_infos.values() if info.filename})


def _instructions(name: str, version: str, archives: tuple[str, ...] | list[str], *,
                  catalog_name: str | None = None) -> str:
  catalog_name = catalog_name or name
  return (f'  either <data_dir>/{catalog_name}/{version}/ prepared by TFDS (e.g. `tfds build '
          f'{catalog_name} --data_dir=<data_dir>` on a machine with network access, then copy '
          'that folder),\n'
          f'  or the original archives in <manual_dir>/ or <manual_dir>/{name}/: '
          f'{", ".join(archives)}\n'
          '  where <data_dir> is config.data.data_dir and <manual_dir> config.data.manual_dir.')


class _FromCatalog(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Reads a prepared TFDS catalog dataset and converts each example (see module docstring)."""

  CATALOG_NAME: str = ''
  CATALOG_SPLITS: tuple[str, ...] = ()
  REGISTRY_NAME: str = ''

  def _layout(self, catalog: tfds.core.DatasetBuilder) -> str:
    return _instructions(self.REGISTRY_NAME, str(catalog.version), archive_names(catalog),
                         catalog_name=self.CATALOG_NAME)

  # Subclasses: features of the converted examples, label names, and the conversion.
  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    raise NotImplementedError(f'{type(self).__name__} must define _features (or its own _info).')

  def _label_names(self, catalog: tfds.core.DatasetBuilder) -> list[str]:
    return list(catalog.info.features['label'].names)

  def _convert(self, example: dict[str, Any], catalog: tfds.core.DatasetBuilder
               ) -> dict[str, Any] | None:
    """The converted example without 'example_id', or None to leave it out."""
    raise NotImplementedError(f'{type(self).__name__} must define _convert.')

  def _split_generators(self, dl_manager):
    catalog = catalog_builder(self.CATALOG_NAME, self.data_dir_root)
    if not is_prepared(catalog):
      self._prepare_catalog(catalog, dl_manager)
    _common.set_label_names(self.info, self._label_names(catalog))
    return {'train': self._generate_examples(catalog)}

  def _prepare_catalog(self, catalog: tfds.core.DatasetBuilder, dl_manager) -> None:
    files = archive_names(catalog)
    try:
      manual = _common.find_manual_dir(
          dl_manager, dataset=self.REGISTRY_NAME, layout=self._layout(catalog),
          subdirs=(self.REGISTRY_NAME, self.CATALOG_NAME),
          missing=lambda p: [f for f in files if not (p / f).is_file()])
    except _common.ManualDirError as e:
      raise _common.ManualDirError(
          f'{self.REGISTRY_NAME}: the TFDS catalog dataset {self.CATALOG_NAME!r} '
          f'{catalog.version} is not prepared in {catalog.data_dir}, and its archives were not '
          f'found to prepare it offline. Nothing is downloaded from here.\n{e}') from e
    catalog.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual), try_download_gcs=False))

  def _generate_examples(self, catalog: tfds.core.DatasetBuilder) -> Iterator[tuple[str, dict]]:
    example_id = 0
    for split in self.CATALOG_SPLITS:
      ds = catalog.as_dataset(split=split, shuffle_files=False)
      for i, example in enumerate(tfds.as_numpy(ds)):
        converted = self._convert(example, catalog)
        if converted is None:
          continue
        converted['example_id'] = example_id
        example_id += 1
        yield f'{split}/{i}', converted


_CIFAR_CITATION = """\
@techreport{krizhevsky2009learning,
  author      = {Krizhevsky, Alex},
  title       = {Learning Multiple Layers of Features from Tiny Images},
  institution = {University of Toronto},
  year        = {2009}
}"""


@registry.register('cifar10')
class Cifar10FromCatalog(_FromCatalog):
  """CIFAR-10 from the TFDS catalog: 'image' uint8 `[32, 32, 3]`, 10 classes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'TFDS catalog cifar10 (train + test) as image/label/example_id.'}
  CATALOG_NAME, CATALOG_SPLITS, REGISTRY_NAME = 'cifar10', ('train', 'test'), 'cifar10'
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Expected layout:\n' + _instructions(
      'cifar10', '3.0.2', ('cifar-10-binary.tar.gz',))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=('CIFAR-10 (60,000 32x32 colour images, 10 classes), read from the TFDS '
                     "catalog dataset 'cifar10' prepared in the same data_dir. Train and test "
                     "images together form the single 'train' split."),
        features=tfds.features.FeaturesDict(self._features()),
        supervised_keys=('image', 'label'),
        homepage='https://www.cs.toronto.edu/~kriz/cifar.html',
        citation=_CIFAR_CITATION,
    )

  def _features(self):
    return {
        'image': tfds.features.Tensor(shape=(32, 32, 3), dtype=np.uint8),
        'label': tfds.features.ClassLabel(),  # names from the catalog dataset
        'example_id': tfds.features.Scalar(dtype=np.int64),
    }

  def _convert(self, example, catalog):
    del catalog
    return {'image': example['image'], 'label': int(example['label'])}


@registry.register('cifar100')
class Cifar100FromCatalog(Cifar10FromCatalog):
  """CIFAR-100 from the TFDS catalog: 'image' uint8 `[32, 32, 3]`, 100 fine classes."""

  RELEASE_NOTES = {'1.0.0': 'TFDS catalog cifar100 (train + test), fine labels.'}
  CATALOG_NAME, CATALOG_SPLITS, REGISTRY_NAME = 'cifar100', ('train', 'test'), 'cifar100'
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Expected layout:\n' + _instructions(
      'cifar100', '3.0.2', ('cifar-100-binary.tar.gz',))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=('CIFAR-100 (60,000 32x32 colour images, 100 classes in 20 superclasses), '
                     "read from the TFDS catalog dataset 'cifar100' prepared in the same "
                     "data_dir. Label: the fine class; 'superclass' names the coarse one. Train "
                     "and test images together form the single 'train' split."),
        features=tfds.features.FeaturesDict(self._features()),
        supervised_keys=('image', 'label'),
        homepage='https://www.cs.toronto.edu/~kriz/cifar.html',
        citation=_CIFAR_CITATION,
    )

  def _features(self):
    return {**super()._features(), 'superclass': tfds.features.Text()}

  def _convert(self, example, catalog):
    coarse = catalog.info.features['coarse_label'].int2str(int(example['coarse_label']))
    return {'image': example['image'], 'label': int(example['label']), 'superclass': coarse}


@registry.register('speech_commands')
class SpeechCommandsFromCatalog(_FromCatalog):
  """Speech Commands v0.02 keywords from the TFDS catalog: 'speech' log-mel `[32, 40]`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'TFDS catalog speech_commands, 10 keywords, log-mel [32, 40] of 1 s.'}
  CATALOG_NAME = 'speech_commands'
  CATALOG_SPLITS = ('train', 'validation', 'test')
  REGISTRY_NAME = 'speech_commands'
  SAMPLE_RATE = 16000

  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Expected layout:\n' + _instructions(
      'speech_commands', '0.0.3',
      ('speech_commands_v0.02.tar.gz', 'speech_commands_test_set_v0.02.tar.gz'))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Speech Commands v0.02 keywords, read from the TFDS catalog dataset 'speech_commands' "
            'prepared in the same data_dir: the ten keywords down, go, left, no, off, on, right, '
            "stop, up, yes ('_silence_' and '_unknown_' are left out). Each 1 s clip becomes a "
            f'log-mel spectrogram [{FRAMES}, {N_MELS}] (features.log_mel). Train, validation and '
            "test clips together form the single 'train' split."),
        features=tfds.features.FeaturesDict({
            'speech': tfds.features.Tensor(shape=(FRAMES, N_MELS), dtype=np.float32),
            'label': tfds.features.ClassLabel(names=KEYWORDS),
            'example_id': tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=('speech', 'label'),
        homepage='https://arxiv.org/abs/1804.03209',
        license='CC BY 4.0',
        citation="""\
@article{warden2018speech,
  title   = {Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition},
  author  = {Warden, Pete},
  journal = {arXiv preprint arXiv:1804.03209},
  year    = {2018}
}""",
    )

  def _label_names(self, catalog):
    names = list(catalog.info.features['label'].names)
    lacking = [k for k in KEYWORDS if k not in names]
    if lacking:
      raise ValueError(f'speech_commands: the catalog dataset has labels {names}, without '
                       f'the keywords {lacking}.')
    return list(KEYWORDS)

  def _convert(self, example, catalog):
    word = catalog.info.features['label'].int2str(int(example['label']))
    if word not in KEYWORDS:
      return None
    wave = np.asarray(example['audio'], np.float32) * _INT16_SCALE
    return {
        'speech': features.log_mel(wave, self.SAMPLE_RATE, frames=FRAMES, seconds=SECONDS,
                                   n_mels=N_MELS),
        'label': KEYWORDS.index(word),
    }
