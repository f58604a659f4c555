"""The 'audio' modality of `synthetic_concepts` v1: a synthetic note pattern as log-mel."""

from __future__ import annotations

import numpy as np

from meta_align_jax.data import features
from meta_align_jax.data.builders.synthetic_concepts.concepts import (
    AUDIO_FRAMES, AUDIO_RATE, AUDIO_SECONDS, COLOURS, N_MELS, Concept, Latents)

_BASE_HZ = 150.0
_BELL_RATIOS = np.array([1.0, 2.76, 5.40, 8.93, 13.34])   # partials of a struck bar / bell
_BELL_AMPS = np.array([1.0, 0.5, 0.35, 0.2, 0.12])


def _partials(shape: str, f0: float) -> tuple[np.ndarray, np.ndarray]:
  """Frequency ratios and amplitudes of the shape's timbre."""
  k = np.arange(1, 25, dtype=np.float64)
  if shape == 'circle':      # nearly pure
    ratios, amps = k[:3], np.array([1.0, 0.12, 0.04])
  elif shape == 'square':    # odd harmonics, 1/k
    ratios = k[::2]
    amps = 1.0 / ratios
  elif shape == 'triangle':  # odd harmonics, 1/k^2
    ratios = k[::2]
    amps = 1.0 / ratios ** 2
  elif shape == 'cross':     # sawtooth
    ratios, amps = k, 1.0 / k
  elif shape == 'star':      # bell-like, inharmonic
    ratios, amps = _BELL_RATIOS, _BELL_AMPS
  elif shape == 'diamond':   # a formant near 1.5 kHz over a weak 1/k spectrum
    ratios = k
    amps = 0.15 / k + np.exp(-(((k * f0) - 1500.0) / 400.0) ** 2)
  else:
    raise ValueError(f'Unknown shape {shape!r}.')
  keep = ratios * f0 < 6000.0
  return ratios[keep], amps[keep]


def _tone(f: np.ndarray, ratios: np.ndarray, amps: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
  """Sum of partials following the instantaneous fundamental `f` [n] (Hz)."""
  phase = 2 * np.pi * np.cumsum(f) / AUDIO_RATE
  offsets = rng.uniform(0, 2 * np.pi, size=len(ratios))
  return (amps[:, None] * np.sin(ratios[:, None] * phase[None] + offsets[:, None])).sum(0)


def _envelope(pattern: str, t: np.ndarray, onset: float, end: float, tempo: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Amplitude envelope [n] and a pitch-step mask [n] (1 = upper note of a trill)."""
  active = ((t >= onset) & (t < end)).astype(np.float64)
  ramp = np.clip((t - onset) / 0.03, 0, 1) * np.clip((end - t) / 0.08, 0, 1)
  upper = np.zeros_like(t)
  local = t - onset
  if pattern == 'plain':       # one sustained note, slight tremolo
    env = ramp * (1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(3, 7) * t))
  elif pattern == 'striped':   # regular pulses, about half on
    env = ramp * 0.5 * (1.0 + np.tanh(6.0 * np.sin(2 * np.pi * tempo * local)))
  elif pattern == 'dotted':    # short plucked notes at random times
    env = np.zeros_like(t)
    when = onset + rng.uniform(0, 0.05)
    while when < end:
      env += np.where(t >= when, np.exp(-(t - when) / 0.03), 0.0) * (t - when < 0.2)
      when += rng.exponential(1.0 / (1.3 * tempo)) + 0.05
    env = np.minimum(env, 1.0) * active
  elif pattern == 'checkered':  # a trill between two notes a fourth apart
    env = ramp
    upper = (np.sin(2 * np.pi * tempo * local) < 0).astype(np.float64)
  else:
    raise ValueError(f'Unknown pattern {pattern!r}.')
  return env * active, upper


def _coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
  """White, pink-ish or brown-ish noise (random spectral tilt), unit RMS."""
  spectrum = np.fft.rfft(rng.normal(size=n))
  freqs = np.fft.rfftfreq(n, 1.0 / AUDIO_RATE)
  spectrum *= (np.maximum(freqs, 20.0) / 1000.0) ** (-rng.uniform(0.0, 1.0))
  noise = np.fft.irfft(spectrum, n)
  return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def _chirp(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A unit-amplitude exponential chirp (100 Hz-4 kHz) at a random time and length: a distractor."""
  start = rng.uniform(0, 0.8)
  length = rng.uniform(0.1, 0.4)
  f_start, f_end = np.exp(rng.uniform(np.log(100), np.log(4000), size=2))
  burst_t = np.clip(t - start, 0, length)
  sweep = f_start * (f_end / f_start) ** (burst_t / length)
  gate = ((t >= start) & (t < start + length)).astype(np.float64)
  return gate * np.sin(2 * np.pi * np.cumsum(sweep) / AUDIO_RATE)


def synthesize_audio(concept: Concept, latents: Latents, rng: np.random.Generator) -> np.ndarray:
  """The concept's 1 s sound at AUDIO_RATE, float32 [AUDIO_RATE * AUDIO_SECONDS]."""
  n = int(AUDIO_RATE * AUDIO_SECONDS)
  t = np.arange(n) / AUDIO_RATE
  semitones = (2.0 * COLOURS.index(concept.colour) + (12.0 if concept.size == 'small' else 0.0)
               - 0.7 * latents.scale + rng.normal(0, 0.2))
  f0 = _BASE_HZ * 2.0 ** (semitones / 12.0)
  tempo = 4.0 * 2.0 ** (0.5 * latents.rotation)              # 2.8-5.7 events per second
  onset = 0.03 + 0.15 * (latents.x + 1.0) / 2.0              # further right, later
  end = min(onset + rng.uniform(0.6, 0.85), AUDIO_SECONDS)
  env, upper = _envelope(concept.pattern, t, onset, end, tempo, rng)
  vibrato = 1.0 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 7) * t + rng.uniform(0, 2 * np.pi))
  f = f0 * vibrato * 2.0 ** (5.0 * upper / 12.0)
  ratios, amps = _partials(concept.shape, f0 * 2.0 ** (5.0 / 12.0))  # keep both notes < Nyquist
  signal = env * _tone(f, ratios, amps / amps.sum(), rng)
  signal /= np.sqrt(np.mean(signal[env > 0.05] ** 2)) + 1e-12   # unit RMS while sounding

  # Nuisance: an unrelated chirp or tone burst, coloured background noise, random gain.
  if rng.random() < 0.6:
    chirp = _chirp(t, rng)
    signal += rng.uniform(0.2, 0.6) * chirp
  snr_db = rng.uniform(0.0, 12.0)
  signal += 10.0 ** (-snr_db / 20.0) * _coloured_noise(n, rng)
  signal *= rng.uniform(0.15, 0.5) / (np.abs(signal).max() + 1e-12)
  return signal.astype(np.float32)


def render_audio(concept: Concept, latents: Latents, rng: np.random.Generator) -> np.ndarray:
  """float32 [AUDIO_FRAMES, N_MELS] log-mel of `synthesize_audio`."""
  return features.log_mel(synthesize_audio(concept, latents, rng), AUDIO_RATE,
                          frames=AUDIO_FRAMES, seconds=AUDIO_SECONDS, n_mels=N_MELS)

