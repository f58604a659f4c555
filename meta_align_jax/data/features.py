"""Feature extraction shared by the builders: log-mel spectrograms (librosa) and a word tokeniser.

`log_mel` is the fixed front end of the synthetic data; `normalized_log_mel` the one for real
recordings, whose level, band and length vary. Features are computed once, when a TFDS builder
prepares its dataset, and stored in the prepared records; the episode pipeline never recomputes
them per step.
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


def normalized_log_mel(waveform: np.ndarray, sample_rate: int, *, frames: int,
                       seconds: float = 1.0, n_mels: int = 40, fmin: float = 50.0,
                       fmax: float | None = None, top_db: float = 80.0, trim_db: float = 30.0,
                       floor_percentile: float = 5.0) -> np.ndarray:
  """Log-mel of a recording of unknown level, band and length, float32 `[frames, n_mels]`.

  Unlike `log_mel` (fixed 16 kHz analysis, absolute level, hard-zero padding):
  - the mel filters span [fmin, fmax] at the recording's own rate (fmax defaults to its
    Nyquist frequency), with an FFT fine enough that no mel band is empty;
  - the level is normalised per clip: dB relative to the clip's loudest bin, floored at -top_db;
  - silence more than `trim_db` below the peak is trimmed from both ends, the utterance (its
    first `seconds` at most) is centred in the window, and the frames around it hold the clip's
    own noise floor (per band, the `floor_percentile` percentile over the untrimmed clip), not
    zeros, so that the clip's length and onset do not show as blocks of exact zeros.
  Values are (dB + top_db) / top_db, in [0, 1].
  """
  import librosa  # only the data package imports librosa
  y = np.asarray(waveform, dtype=np.float32)
  if y.ndim > 1:
    y = y.mean(axis=-1)
  fmax = float(sample_rate) / 2 if fmax is None else float(fmax)
  if not 0 <= fmin < fmax <= sample_rate / 2:
    raise ValueError(f'normalized_log_mel: need 0 <= fmin ({fmin}) < fmax ({fmax}) <= '
                     f'{sample_rate / 2} Hz (the Nyquist frequency of the recording).')
  hop = max(1, int(round(sample_rate * seconds / frames)))
  n_fft = 1 << int(np.ceil(np.log2(max(2 * hop, sample_rate / 16))))   # >= 62.5 ms
  if len(y) < n_fft:
    y = np.pad(y, (0, n_fft - len(y)))

  def mel_power(x):
    return librosa.feature.melspectrogram(y=x, sr=sample_rate, n_fft=n_fft, hop_length=hop,
                                          n_mels=n_mels, fmin=fmin, fmax=fmax, power=2.0)

  full = mel_power(y)
  ref = float(full.max()) if full.max() > 0 else 1.0
  scale = lambda p: (np.clip(librosa.power_to_db(p, ref=ref, top_db=None), -top_db, 0.0)
                     + top_db) / top_db
  floor = np.percentile(scale(full), floor_percentile, axis=1)       # [n_mels]
  _, (start, end) = librosa.effects.trim(y, top_db=trim_db, frame_length=n_fft,
                                         hop_length=max(1, hop // 4))
  voiced = y[start:end][:int(round(seconds * sample_rate))]
  feat = scale(mel_power(np.pad(voiced, (0, max(0, n_fft - len(voiced)))))).T
  used = min(frames, max(1, int(np.ceil(len(voiced) / hop))))
  out = np.tile(floor[None], (frames, 1))
  offset = (frames - used) // 2
  out[offset:offset + used] = feat[:used]
  return out.astype(np.float32)
