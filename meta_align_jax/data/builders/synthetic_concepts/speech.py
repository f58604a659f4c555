"""The 'speech' modality of `synthetic_concepts` v1: the attribute phrase said by eSpeak NG."""

from __future__ import annotations

import numpy as np

from meta_align_jax.data import features
from meta_align_jax.data.builders import _espeak
from meta_align_jax.data.builders._espeak import EspeakNG
from meta_align_jax.data.builders.synthetic_concepts.concepts import (
    N_MELS, SPEECH_FRAMES, SPEECH_SECONDS)

_SPEECH_ACCENTS = ('en', 'en-us', 'en-gb-scotland', 'en-gb-x-rp', 'en-029', 'en-us-nyc')
_SPEECH_VARIANTS = ('m1', 'm3', 'm7', 'f1', 'f2', 'f3', 'f4', 'klatt3')
SPEECH_VOICES = tuple(f'{a}+{v}' for a in _SPEECH_ACCENTS for v in _SPEECH_VARIANTS)


def render_speech(spoken: str, rng: np.random.Generator, tts: EspeakNG) -> np.ndarray:
  """float32 [SPEECH_FRAMES, N_MELS] log-mel of `spoken` said by a random voice, with noise."""
  voice = SPEECH_VOICES[rng.integers(len(SPEECH_VOICES))]
  rate = int(rng.integers(170, 261))   # words per minute
  pitch, pitch_range = (int(v) for v in rng.integers(25, 76, size=2))
  lead = rng.uniform(0.0, 0.25)
  budget = SPEECH_SECONDS - lead
  # Speak fast enough for the phrase to fit the window: eSpeak NG takes about
  # 0.4 s + 7.9 s * characters / rate. Re-synthesise faster when that estimate falls short.
  rate = min(_espeak.MAX_RATE, max(rate, int(8.5 * len(spoken) / (budget - 0.5))))
  wave, sr = tts.synthesize(spoken, voice=voice, rate=rate, pitch=pitch, pitch_range=pitch_range)
  wave = np.trim_zeros(wave)
  if len(wave) > budget * sr:
    rate = min(_espeak.MAX_RATE, int(np.ceil(rate * len(wave) / (budget * sr))) + 10)
    wave, sr = tts.synthesize(spoken, voice=voice, rate=rate, pitch=pitch,
                              pitch_range=pitch_range)
    wave = np.trim_zeros(wave)[:int(budget * sr)]
  clip = np.zeros([int(SPEECH_SECONDS * sr)], np.float64)
  start = int(lead * sr)
  clip[start:start + len(wave)] = wave
  rms = np.sqrt(np.mean(wave.astype(np.float64) ** 2)) + 1e-12
  snr_db = rng.uniform(5.0, 20.0)
  clip += rms * 10.0 ** (-snr_db / 20.0) * rng.normal(size=clip.shape)
  clip *= rng.uniform(0.1, 0.8) / (np.abs(clip).max() + 1e-12)
  return features.log_mel(clip.astype(np.float32), sr, frames=SPEECH_FRAMES,
                          seconds=SPEECH_SECONDS, n_mels=N_MELS)

