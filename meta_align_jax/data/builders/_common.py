"""Helpers shared by the builders that read real data: local copies, audio, images, vocabularies.

Builders that read a local copy of a dataset get its directory from TFDS's `dl_manager.manual_dir`
(`config.data.manual_dir`). One manual directory may hold several datasets side by side, so
`find_manual_dir` accepts either the dataset's own directory or a parent holding it under a known
name (e.g. `manual_dir=/data` with `/data/fsdd/recordings/...`), and checks the expected layout
before any work starts, naming the path and what is missing when it is not there.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pathlib
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from meta_align_jax.data import features
from meta_align_jax.data.tfsetup import tfds

DIGIT_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
VOCAB_KEY = 'vocabulary'
_READ_MARGIN_S = 0.25


@contextlib.contextmanager
def map_in_processes(fn: Callable, jobs: list, num_workers: int) -> Iterator:
  """`map(fn, jobs)` in order, in `num_workers` worker processes (0 or 1: in this process).

  The workers come from a fork server (Python's 'forkserver' start method), not from forking
  this process: a dataset is often built on first use, after JAX has started its threads, and
  forking a multithreaded process can deadlock the child (JAX warns about it). The server is a
  fresh interpreter that imports `fn`'s module once (`set_forkserver_preload`), so each worker
  starts at once. `fn` must be a module-level function.
  """
  if num_workers <= 1 or len(jobs) <= 1:
    yield map(fn, jobs)
    return
  method = 'forkserver' if 'forkserver' in multiprocessing.get_all_start_methods() else 'spawn'
  context = multiprocessing.get_context(method)
  if method == 'forkserver':
    context.set_forkserver_preload([fn.__module__])
  with context.Pool(min(num_workers, len(jobs))) as pool:
    yield pool.imap(fn, jobs, chunksize=1)


class ManualDirError(FileNotFoundError):
  """The local copy of a dataset is missing or does not have the expected layout."""


def find_manual_dir(dl_manager, *, dataset: str, layout: str, subdirs: Sequence[str],
                    missing: Callable[[pathlib.Path], list[str]]) -> pathlib.Path:
  """Returns the directory holding `dataset`'s raw files, checked against its layout.

  Args:
    dl_manager: the `tfds.download.DownloadManager` given to `_split_generators`.
    dataset: the dataset's name, for messages.
    layout: human-readable description of the expected files.
    subdirs: names under which the dataset may sit inside the manual directory; the manual
      directory itself is tried last.
    missing: returns what a candidate directory lacks (empty when complete).

  Raises:
    ManualDirError: no manual directory, or no candidate holds the expected files. The message
      names the directories looked at, what is missing and the expected layout.
  """
  try:
    root = pathlib.Path(os.fspath(dl_manager.manual_dir))
  except AssertionError as e:  # TFDS: manual_dir missing or empty (its message repeats layout).
    path = getattr(dl_manager, '_manual_dir', None)
    where = (f'the manual directory {path} does not exist or is empty' if path
             else str(e).splitlines()[0])
    raise ManualDirError(
        f'{dataset}: no local copy found: {where}.\nExpected layout:\n{layout}\n'
        'Pass its directory as config.data.manual_dir '
        '(tfds.download.DownloadConfig(manual_dir=...)).') from e
  candidates = list(dict.fromkeys([root / s for s in subdirs] + [root]))
  problems = []
  for path in candidates:
    if not path.is_dir():
      continue
    lacks = missing(path)
    if not lacks:
      return path
    problems.append(f'  {path}: missing {", ".join(lacks[:5])}'
                    + (f' and {len(lacks) - 5} more' if len(lacks) > 5 else ''))
  looked = ', '.join(str(p) for p in candidates)
  raise ManualDirError(
      f'{dataset}: the manual directory {root} does not hold a complete copy '
      f'(looked in {looked}).\n' + '\n'.join(problems)
      + f'\nExpected layout:\n{layout}')


def read_audio(path: os.PathLike | str,
               max_seconds: float | None = None) -> tuple[np.ndarray, int]:
  """Reads an audio file (its first `max_seconds` when given) as mono float32 and its rate."""
  import soundfile  # pylint: disable=g-import-not-at-top
  with soundfile.SoundFile(os.fspath(path)) as f:
    rate = int(f.samplerate)
    frames = -1 if max_seconds is None else int(np.ceil(max_seconds * rate))
    wave = f.read(frames=frames, dtype='float32', always_2d=True)
  return wave.mean(axis=1), rate


def log_mel_of_file(path: os.PathLike | str, *, frames: int, seconds: float,
                    n_mels: int = 40) -> np.ndarray:
  """`features.log_mel` of an audio file: float32 `[frames, n_mels]`.

  Only the first `seconds` (plus a margin covering the FFT window and resampling filter) are
  read, since later audio is cropped away anyway.
  """
  wave, rate = read_audio(path, max_seconds=seconds + _READ_MARGIN_S)
  return features.log_mel(wave, rate, frames=frames, seconds=seconds, n_mels=n_mels)


def fit_image(image: Image.Image, size: tuple[int, int], mode: str) -> np.ndarray:
  """Centre-crops `image` to the aspect ratio of `size` (h, w), resizes it, returns uint8 HWC."""
  image = image.convert(mode)
  h, w = size
  iw, ih = image.size
  if iw * h != ih * w:  # crop the longer side to the target aspect ratio
    cw, ch = min(iw, ih * w // h), min(ih, iw * h // w)
    left, top = (iw - cw) // 2, (ih - ch) // 2
    image = image.crop((left, top, left + cw, top + ch))
  if image.size != (w, h):
    image = image.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)
  array = np.asarray(image, dtype=np.uint8)
  return array[..., None] if array.ndim == 2 else array


def set_label_names(info: tfds.core.DatasetInfo, names: Sequence[str]) -> None:
  """Sets the class names of `info.features['label']` when they come from the data."""
  label = info.features['label']
  if label.num_classes is None:
    label.names = list(names)
  elif list(label.names) != list(names):
    raise ValueError(f'{info.name}: the data has classes {list(names)[:10]}..., but the builder '
                     f'was set up for {list(label.names)[:10]}...')


def store_vocabulary(info: tfds.core.DatasetInfo, vocab: features.Vocabulary) -> None:
  """Records `vocab` in the dataset's metadata (saved as metadata.json next to the records)."""
  info.metadata[VOCAB_KEY] = list(vocab.words)


def vocabulary(builder: tfds.core.DatasetBuilder) -> features.Vocabulary:
  """The vocabulary a prepared text builder stored; ids index `vocabulary(builder).words`."""
  words = (builder.info.metadata or {}).get(VOCAB_KEY)
  if words is None:
    raise ValueError(f'Dataset {builder.name!r} stores no vocabulary (is it prepared, and does it '
                     'have a text feature?).')
  return features.Vocabulary(words)
