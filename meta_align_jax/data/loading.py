"""Loading a dataset modality into memory: TFDS builder -> prepared records -> numpy, once.

A builder is looked up in `registry`, prepared offline into `config.data.data_dir` (TFDS's
default, `~/tensorflow_datasets` or `$TFDS_DATA_DIR`, when empty) reading raw files from
`config.data.manual_dir`, and its 'train' split is read into numpy in one go. The prepared TFDS
records are the on-disk feature cache; the decoded arrays are kept in a small per-process cache so
that the training iterator, the evaluation episodes and the retrieval set read a dataset once.
Arrays handed out are read-only, because they are shared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
from typing import Mapping

import numpy as np

from meta_align_jax.data import augment
from meta_align_jax.data import convert
from meta_align_jax.data import registry
from meta_align_jax.data.tfsetup import configure, tf, tfds

_SIDES = ('source', 'target')


@dataclasses.dataclass(frozen=True)
class ModalityData:
  """All examples of one feature of one dataset, ready for the model.

  Attributes:
    x: `[n, *input_shape]`, float32 (images in [0, 1], log-mels) or int32 (token ids).
    label: int32 `[n]`, index into `class_names`.
    class_names: the dataset's class names; the join key across datasets.
    example_id: int64 `[n]`; equal ids across features of one builder are the same instance.
  """
  x: np.ndarray
  label: np.ndarray
  class_names: list[str]
  example_id: np.ndarray

  def __post_init__(self):
    n = self.x.shape[0]
    if self.label.shape != (n,) or self.example_id.shape != (n,):
      raise ValueError(f'ModalityData: x has {n} examples but label has shape {self.label.shape} '
                       f'and example_id {self.example_id.shape}.')
    if n and (self.label.min() < 0 or self.label.max() >= len(self.class_names)):
      raise ValueError(f'ModalityData: labels must lie in [0, {len(self.class_names)}).')

  @property
  def num_examples(self) -> int:
    return int(self.x.shape[0])

  def class_counts(self) -> dict[str, int]:
    counts = np.bincount(self.label, minlength=len(self.class_names))
    return {name: int(c) for name, c in zip(self.class_names, counts)}


@dataclasses.dataclass(frozen=True)
class Sources:
  """The two modalities an experiment uses; the seam through which tests inject data."""
  source: ModalityData
  target: ModalityData


def _dirs(config) -> tuple[str | None, str | None]:
  data_dir = os.path.expanduser(config.data.data_dir) if config.data.data_dir else None
  manual_dir = os.path.expanduser(config.data.manual_dir) if config.data.manual_dir else None
  return data_dir, manual_dir


def side_of(dataset: str, feature: str, config) -> str:
  """'source' or 'target': which side of `config` reads `dataset`'s `feature`."""
  for side in _SIDES:
    if (config.data[f'{side}_dataset'], config.data[f'{side}_feature']) == (dataset, feature):
      return side
  raise ValueError(
      f'{dataset!r}/{feature!r} is neither the source (config.data.source_dataset/source_feature='
      f'{config.data.source_dataset!r}/{config.data.source_feature!r}) nor the target '
      f'(config.data.target_dataset/target_feature={config.data.target_dataset!r}/'
      f'{config.data.target_feature!r}); pass side= explicitly.')


def prepare_builder(name: str, data_dir: str | None = None, manual_dir: str | None = None):
  """Returns the prepared TFDS builder registered as `name`, preparing it offline if needed.

  `name` is a registered builder name, optionally with a TFDS builder config: 'name/config'.

  Raises:
    ValueError: unknown name, or raw files missing from `manual_dir` (the message says where the
      files go).
  """
  configure()
  import meta_align_jax.data.builders  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  base, _, builder_config = name.partition('/')    # 'name/config' picks a TFDS BuilderConfig
  builder = registry.get(base)(data_dir=data_dir, config=builder_config or None)
  # A prepared dataset has its dataset_info.json (builder.is_prepared() warns about half-made dirs).
  if tf.io.gfile.exists(os.path.join(builder.data_dir, 'dataset_info.json')):
    return builder
  logging.info('Preparing dataset %r in %s (once; later runs reuse it).', name, builder.data_dir)
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
  try:
    # TFDS prints its own banner to stdout while preparing; the log line above replaces it.
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(download_config=download_config)
  except (AssertionError, FileNotFoundError) as e:
    # TFDS reports a missing or empty manual_dir with an AssertionError; builders reading raw
    # files report missing ones with a FileNotFoundError. Other assertions are bugs: re-raise.
    if isinstance(e, AssertionError) and 'manual' not in str(e).lower():
      raise
    instructions = getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None) or ''
    raise ValueError(
        f'Dataset {name!r} could not be prepared: its raw files are missing. Put them in '
        f'config.data.manual_dir (now {manual_dir or "unset"!r}); the prepared dataset goes to '
        f'config.data.data_dir (now {data_dir or "TFDS default"!r}). {instructions.strip()}\n'
        f'Cause: {e}') from e
  return builder


@functools.lru_cache(maxsize=8)
def _load_split(name: str, data_dir: str | None, manual_dir: str | None
                ) -> tuple[Mapping[str, np.ndarray], tuple[str, ...]]:
  """All features of `name`'s 'train' split as read-only numpy arrays, and its class names."""
  builder = prepare_builder(name, data_dir, manual_dir)
  features = builder.info.features
  if 'label' not in features or 'example_id' not in features:
    raise ValueError(f'Dataset {name!r} lacks the "label" / "example_id" features every builder '
                     f'must have; it has {sorted(features.keys())}.')
  if 'train' not in builder.info.splits:
    raise ValueError(f'Dataset {name!r} has no "train" split; it has {sorted(builder.info.splits)}.')
  ds = builder.as_dataset(split='train', batch_size=-1, shuffle_files=False)
  arrays = {k: np.asarray(v) for k, v in tfds.as_numpy(ds).items()}
  for v in arrays.values():
    v.setflags(write=False)
  return arrays, tuple(features['label'].names)


def feature_names(name: str, config) -> list[str]:
  """The features of dataset `name` (preparing it if needed)."""
  data_dir, manual_dir = _dirs(config)
  arrays, _ = _load_split(name, data_dir, manual_dir)
  return sorted(arrays)


@functools.lru_cache(maxsize=8)
def _load_modality(name: str, feature: str, data_dir: str | None, manual_dir: str | None,
                   side: str, modality: str, input_shape: tuple[int, ...],
                   vocab_size: int | None, rotate: bool = False) -> ModalityData:
  if rotate:
    # Rotations as classes (data/augment.py) of image data, computed once and cached like the rest.
    # (`rotate` passed as load_modality passes it: lru_cache keys on the arguments as written.)
    data = _load_modality(name, feature, data_dir, manual_dir, side, modality, input_shape,
                          vocab_size, False)
    return augment.rotation_classes(data) if modality == 'image' else data
  arrays, class_names = _load_split(name, data_dir, manual_dir)
  if feature not in arrays or feature in ('label', 'example_id'):
    raise ValueError(f'config.data.{side}_feature={feature!r} is not a feature of dataset {name!r}; '
                     f'it has {sorted(k for k in arrays if k not in ("label", "example_id"))}.')
  x = convert.to_input(arrays[feature], modality=modality, input_shape=input_shape, side=side,
                       what=f'dataset {name!r} feature {feature!r}', vocab_size=vocab_size)
  x.setflags(write=False)
  label = arrays['label'].astype(np.int32)
  example_id = arrays['example_id'].astype(np.int64)
  label.setflags(write=False)
  example_id.setflags(write=False)
  return ModalityData(x=x, label=label, class_names=list(class_names), example_id=example_id)


def load_modality(dataset: str, feature: str, config, *, side: str | None = None,
                  rotate: bool = False) -> ModalityData:
  """Loads `dataset`'s `feature` converted to `config.<side>.input_shape`.

  Args:
    dataset: a registered builder name (`config.data.source_dataset` / `target_dataset`).
    feature: the feature to read ('image', 'audio', 'speech', 'text').
    config: the experiment config (data dirs, input shapes, modality).
    side: 'source' or 'target'; inferred from `config.data.*_dataset/*_feature` when None.
    rotate: image data gain their rotations as classes (`augment.rotation_classes`), cached too.

  Returns:
    A `ModalityData` whose arrays are read-only and shared with later calls.

  Raises:
    ValueError: unknown dataset or feature, raw files missing, or the feature's shape does not fit
      `config.<side>.input_shape` (the message names that field and the dataset's shape).
  """
  side = side or side_of(dataset, feature, config)
  if side not in _SIDES:
    raise ValueError(f'side={side!r}: use one of {_SIDES}.')
  data_dir, manual_dir = _dirs(config)
  side_cfg = config[side]
  vocab_size = int(config.model.vocab_size) if side_cfg.modality == 'text' else None
  return _load_modality(dataset, feature, data_dir, manual_dir, side, side_cfg.modality,
                        tuple(int(d) for d in side_cfg.input_shape), vocab_size, bool(rotate))


def single_modality(config) -> bool:
  """`config.task.modalities == ('target',)`: single-modality few-shot learning."""
  return tuple(config.task.get('modalities', _SIDES)) == ('target',)


def load_sources(config) -> Sources:
  """The source and target modalities `config.data` names.

  In single-modality few-shot learning (`config.task.modalities=('target',)`) only the target
  dataset is loaded, and `Sources.source` is the same object as `Sources.target`. With
  `config.augment.rotation_classes` image classes gain their rotations (`data/augment.py`).
  """
  rotate = bool(config.get('augment', {}).get('rotation_classes', False))   # computed once, cached
  target = load_modality(config.data.target_dataset, config.data.target_feature, config,
                         side='target', rotate=rotate)
  source = target if single_modality(config) else load_modality(
      config.data.source_dataset, config.data.source_feature, config, side='source', rotate=rotate)
  return Sources(source=source, target=target)


def clear_cache() -> None:
  """Forgets the in-memory copies of loaded datasets (e.g. after re-preparing one)."""
  _load_modality.cache_clear()
  _load_split.cache_clear()
