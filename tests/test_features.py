"""Tests of the front end for real recordings, `features.normalized_log_mel` (FSDD's features)."""

from __future__ import annotations

import numpy as np
import pytest

from meta_align_jax.data import features

RATE = 8000


def _clip(seconds_before, seconds_tone, seconds_after, level=0.3, hz=500.0, seed=0):
  rng = np.random.default_rng(seed)
  n = int(RATE * (seconds_before + seconds_tone + seconds_after))
  wave = 1e-3 * rng.normal(size=n)
  start, stop = int(RATE * seconds_before), int(RATE * (seconds_before + seconds_tone))
  t = np.arange(stop - start) / RATE
  wave[start:stop] += np.sin(2 * np.pi * hz * t)
  return (level * wave).astype(np.float32)


def test_level_invariant_and_peak_normalised():
  wave = _clip(0.2, 0.3, 0.2)
  a = features.normalized_log_mel(wave, RATE, frames=32)
  b = features.normalized_log_mel(wave / 30.0, RATE, frames=32)   # about 30 dB quieter
  assert a.shape == (32, 40) and a.dtype == np.float32
  np.testing.assert_allclose(a, b, atol=1e-5)
  assert a.max() == pytest.approx(1.0, abs=1e-3) and a.min() >= 0.0
  # The absolute-level front end moves with the level.
  old = features.log_mel(wave, RATE, frames=32), features.log_mel(wave / 30.0, RATE, frames=32)
  assert np.abs(old[0] - old[1]).max() > 0.3


def test_utterance_centred_and_padded_with_the_noise_floor():
  early, late = _clip(0.05, 0.3, 0.6), _clip(0.6, 0.3, 0.05)
  a = features.normalized_log_mel(early, RATE, frames=32)
  b = features.normalized_log_mel(late, RATE, frames=32)
  assert np.abs(a - b).mean() < 0.02                   # the onset no longer shows
  tone_band = int(a[16].argmax())
  assert a[16, tone_band] > 0.9                        # the tone sits in the middle frames
  assert a[0, tone_band] < 0.5 and a[-1, tone_band] < 0.5
  # Padding frames hold the clip's noise floor, not zeros: equal across the padded frames.
  assert not (a == 0).all(axis=1).any()
  np.testing.assert_array_equal(a[0], a[1])
  short = _clip(0.05, 0.3, 0.05)                      # 0.4 s: the old front end pads 60 % zeros
  assert (features.log_mel(short, RATE, frames=32) == 0).all(axis=1).sum() >= 15
  assert not (features.normalized_log_mel(short, RATE, frames=32) == 0).all(axis=1).any()


def test_mel_bands_within_the_recording_band_none_empty():
  wave = (0.1 * np.random.default_rng(0).normal(size=RATE)).astype(np.float32)   # white noise
  a = features.normalized_log_mel(wave, RATE, frames=32)
  assert (a.std(axis=0) > 0).all() and (a.mean(axis=0) > 0.5).all()
  old = features.log_mel(wave, RATE, frames=32)       # 16 kHz analysis: bands above 4 kHz empty
  assert (old.mean(axis=0) < 0.05).sum() >= 5         # (-76 dB and below: nothing there)
  with pytest.raises(ValueError, match='Nyquist'):
    features.normalized_log_mel(wave, RATE, frames=32, fmax=6000.0)


def test_long_clips_keep_their_first_seconds_and_short_ones_work():
  long = _clip(0.0, 2.0, 0.0)
  a = features.normalized_log_mel(long, RATE, frames=32)
  assert a[:, a[16].argmax()].min() > 0.9             # the tone's band is loud in every frame
  tiny = _clip(0.0, 0.02, 0.0)
  assert np.isfinite(features.normalized_log_mel(tiny, RATE, frames=32)).all()
