"""The 'audio' modality of `synthetic_concepts` v2: v1's note patterns under recording nuisance.

The class code is v1's (colour = pitch class on a whole-tone scale, size = octave, shape =
timbre, pattern = rhythm; `audio.py`). Every instance is then put through class-independent
nuisance of the kind that separates recordings of one sound: a small transposition, a random
equaliser (a spectral tilt plus three fixed bands with random gains), a level that varies over
`GAIN_DB`, background noise at `SNR_DB` and at most one distractor chirp. The equaliser and the
level are large but nearly additive in log-mel, a low-rank family that a projection learnt from
many classes removes and raw similarity cannot; the nuisances that blur the class code itself
(transposition, noise, chirps, time-stretch, which is off: `STRETCH`) are kept mild, since they
cost linear separability as much as raw similarity. The ranges were set with the premise gate:
docs/results/premise.md.
"""

from __future__ import annotations

import numpy as np

from meta_align_jax.data import features
from meta_align_jax.data.builders.synthetic_concepts import audio as v1
from meta_align_jax.data.builders.synthetic_concepts.concepts import (
    AUDIO_FRAMES, AUDIO_RATE, AUDIO_SECONDS, COLOURS, N_MELS, Concept, Latents)

# Nuisance ranges (uniform draws per instance).
TRANSPOSE_SEMITONES = 0.3     # +- (the scale's steps are 2 semitones apart)
STRETCH = (1.0, 1.0)          # tempo factor of the rhythm (a draw is made even when fixed)
EQ_TILT_DB = 18.0             # +- dB per decade around 1 kHz
EQ_PEAK_DB = 15.0             # +- dB of each band of EQ_BANDS
EQ_BANDS = ((200.0, 1.0), (1000.0, 1.0), (4000.0, 1.0))   # centre (Hz), width (octaves)
SNR_DB = (3.0, 12.0)
GAIN_DB = (-24.0, 0.0)        # level of the clip's peak, relative to 0.5 full scale
CHIRPS = 1                    # at most this many distractor chirps


def _equaliser(n: int, rng: np.random.Generator) -> np.ndarray:
  """Gains [n // 2 + 1] of a random smooth equaliser on the rfft bins of n samples."""
  freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / AUDIO_RATE), 20.0)
  octave = np.log2(freqs / 1000.0)
  gain_db = rng.uniform(-EQ_TILT_DB, EQ_TILT_DB) * octave / np.log2(10.0)
  for centre_hz, width in EQ_BANDS:   # fixed bands, random gains: a low-rank family in log-mel
    gain_db = gain_db + rng.uniform(-EQ_PEAK_DB, EQ_PEAK_DB) * np.exp(
        -0.5 * ((octave - np.log2(centre_hz / 1000.0)) / width) ** 2)
  return 10.0 ** (gain_db / 20.0)


def synthesize_audio(concept: Concept, latents: Latents, rng: np.random.Generator) -> np.ndarray:
  """The concept's 1 s sound with v2 nuisance, float32 [AUDIO_RATE * AUDIO_SECONDS]."""
  n = int(AUDIO_RATE * AUDIO_SECONDS)
  t = np.arange(n) / AUDIO_RATE
  semitones = (2.0 * COLOURS.index(concept.colour) + (12.0 if concept.size == 'small' else 0.0)
               - 0.7 * latents.scale
               + rng.uniform(-TRANSPOSE_SEMITONES, TRANSPOSE_SEMITONES))
  f0 = v1._BASE_HZ * 2.0 ** (semitones / 12.0)
  tempo = 4.0 * 2.0 ** (0.5 * latents.rotation) * rng.uniform(*STRETCH)
  onset = 0.03 + 0.15 * (latents.x + 1.0) / 2.0
  end = min(onset + rng.uniform(0.6, 0.85), AUDIO_SECONDS)
  env, upper = v1._envelope(concept.pattern, t, onset, end, tempo, rng)
  vibrato = 1.0 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 7) * t + rng.uniform(0, 2 * np.pi))
  f = f0 * vibrato * 2.0 ** (5.0 * upper / 12.0)
  ratios, amps = v1._partials(concept.shape, f0 * 2.0 ** (5.0 / 12.0))
  signal = env * v1._tone(f, ratios, amps / amps.sum(), rng)
  signal /= np.sqrt(np.mean(signal[env > 0.05] ** 2)) + 1e-12   # unit RMS while sounding

  for _ in range(rng.integers(0, CHIRPS + 1)):
    signal += rng.uniform(0.3, 1.0) * v1._chirp(t, rng)
  signal += 10.0 ** (-rng.uniform(*SNR_DB) / 20.0) * v1._coloured_noise(n, rng)
  signal = np.fft.irfft(np.fft.rfft(signal) * _equaliser(n, rng), n)
  signal *= 0.5 * 10.0 ** (rng.uniform(*GAIN_DB) / 20.0) / (np.abs(signal).max() + 1e-12)
  return signal.astype(np.float32)


def render_audio(concept: Concept, latents: Latents, rng: np.random.Generator) -> np.ndarray:
  """float32 [AUDIO_FRAMES, N_MELS] log-mel of `synthesize_audio`."""
  return features.log_mel(synthesize_audio(concept, latents, rng), AUDIO_RATE,
                          frames=AUDIO_FRAMES, seconds=AUDIO_SECONDS, n_mels=N_MELS)
