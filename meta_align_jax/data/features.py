"""Feature extraction shared by the builders: log-mel spectrograms (librosa) and a word tokeniser.

Features are computed once, when a TFDS builder prepares its dataset, and stored in the prepared
records; the episode pipeline never recomputes them per step.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

PAD_ID = 0
UNK_ID = 1
_TOKEN_RE = re.compile(r"[a-z0-9']+")


def fix_length(x: np.ndarray, length: int, axis: int = 0) -> np.ndarray:
  """Crops or zero-pads `x` along `axis` to exactly `length`."""
  n = x.shape[axis]
  if n >= length:
    return np.take(x, np.arange(length), axis=axis)
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, length - n)
  return np.pad(x, pad)


def log_mel(waveform: np.ndarray, sample_rate: int, *, frames: int, seconds: float = 1.0,
            n_mels: int = 40, target_rate: int = 16000, n_fft: int = 1024,
            top_db: float = 80.0) -> np.ndarray:
  """Log-mel spectrogram as float32 `[frames, n_mels]`, scaled to roughly [0, 1].

  The waveform is resampled to `target_rate`; the hop is chosen so that `seconds` of audio map to
  `frames` frames. Longer clips are cropped and shorter ones zero-padded (silence) to `frames`.
  """
  import librosa  # only the data package imports librosa
  y = np.asarray(waveform, dtype=np.float32)
  if y.ndim > 1:
    y = y.mean(axis=-1)
  if sample_rate != target_rate:
    y = librosa.resample(y, orig_sr=sample_rate, target_sr=target_rate)
  hop = max(1, int(round(target_rate * seconds / frames)))
  spec = librosa.feature.melspectrogram(y=y, sr=target_rate, n_fft=n_fft, hop_length=hop,
                                        n_mels=n_mels, power=2.0)
  db = librosa.power_to_db(spec, ref=1.0, top_db=None)
  db = np.clip(db, -top_db, None)              # absolute floor: silence maps to 0 after scaling
  feat = ((db + top_db) / top_db).T.astype(np.float32)   # [time, mels]
  return fix_length(feat, frames, axis=0)


def tokenize(text: str) -> list[str]:
  return _TOKEN_RE.findall(text.lower())


class Vocabulary:
  """Word vocabulary with reserved ids 0 (padding) and 1 (unknown)."""

  def __init__(self, words: Sequence[str]):
    self.words = ['<pad>', '<unk>'] + [w for w in words if w not in ('<pad>', '<unk>')]
    self.index = {w: i for i, w in enumerate(self.words)}

  @classmethod
  def build(cls, texts: Iterable[str], max_size: int | None = None, min_count: int = 1):
    counts: dict[str, int] = {}
    for t in texts:
      for w in tokenize(t):
        counts[w] = counts.get(w, 0) + 1
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if max_size is not None:
      words = words[: max(0, max_size - 2)]
    return cls(words)

  def __len__(self) -> int:
    return len(self.words)

  def encode(self, text: str, length: int) -> np.ndarray:
    """Token ids, int32 `[length]`, 0-padded and truncated."""
    ids = [self.index.get(w, UNK_ID) for w in tokenize(text)][:length]
    out = np.zeros([length], np.int32)
    out[: len(ids)] = ids
    return out
