"""Preparing and reading the real-data TFDS builders in the tests (`test_real_builders.py`,
`test_more_builders.py`): offline builds into a temporary data_dir, and small dummy audio files.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
import soundfile

from meta_align_jax.data import features
from meta_align_jax.data.tfsetup import configure, tfds


@pytest.fixture(scope='module', autouse=True)
def quiet_tfds():
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
