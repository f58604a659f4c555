"""Text to speech with eSpeak NG, through ctypes against the library `espeakng-loader` ships.

`espeakng-loader` (pip) bundles `libespeak-ng` and its voice data but no Python API for
synthesis; `EspeakNG` drives the library's C API directly (`espeak_Initialize` in synchronous
mode, a synth callback collecting the 16-bit samples, `espeak_Synth`).

eSpeak NG keeps synthesis state in static variables (pitch flutter phase, automatic gain,
resonator and echo state) that neither `espeak_Terminate` nor a new `espeak_Initialize` resets, so
the same call gives different samples depending on the calls before it. `EspeakNG` therefore
loads a private copy of the library and re-loads it for every utterance (about 2 ms), which makes
each utterance a pure function of its text and settings. The copy matters: `dlclose` only
unloads a library nobody else holds open.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile

import numpy as np

MIN_RATE, MAX_RATE = 80, 450   # words per minute eSpeak NG accepts

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER
_EE_OK = 0


class EspeakNG:
  """Speech synthesis with the eSpeak NG library of the `espeakng-loader` package.

  Use as a context manager (or call `close`) to remove the private copy of the library. Not
  thread-safe: use one instance per thread or process. POSIX only (uses `dlclose`).

    with EspeakNG() as tts:
      wave, sample_rate = tts.synthesize('a big red circle', voice='en-us+f2', rate=200)
  """

  def __init__(self):
    try:
      import espeakng_loader  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError('Speech synthesis needs eSpeak NG: pip install espeakng-loader') from e
    library = espeakng_loader.get_library_path()
    self._tmp = tempfile.TemporaryDirectory(prefix='meta_align_espeak_')
    self._lib_path = os.path.join(self._tmp.name, os.path.basename(library))
    shutil.copyfile(library, self._lib_path)
    # espeak_Initialize wants the directory that holds `espeak-ng-data`.
    self._data_parent = os.path.dirname(espeakng_loader.get_data_path()).encode()
    self._chunks: list[np.ndarray] = []
    self._callback = _SYNTH_CALLBACK(self._collect)  # kept alive as long as the instance

  def _collect(self, wav, num_samples, events) -> int:
    del events
    if num_samples > 0 and wav:
      self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    return 0  # 0: continue synthesis

  def close(self) -> None:
    self._tmp.cleanup()

  def __enter__(self) -> EspeakNG:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def synthesize(self, text: str, *, voice: str = 'en', rate: int = 175, pitch: int = 50,
                 pitch_range: int = 50) -> tuple[np.ndarray, int]:
    """Speaks `text`; returns (float32 waveform in [-1, 1], sample rate in Hz).

    Args:
      text: what to say (UTF-8).
      voice: an eSpeak NG voice name, optionally with a variant: 'en-us', 'en-gb-scotland+f2'.
      rate: words per minute, MIN_RATE..MAX_RATE.
      pitch: base pitch, 0..99 (50 is the voice's normal pitch).
      pitch_range: intonation range, 0..99 (0 is monotone).
    """
    import _ctypes  # pylint: disable=import-outside-toplevel
    if not MIN_RATE <= rate <= MAX_RATE:
      raise ValueError(f'rate={rate} is outside eSpeak NG\'s range {MIN_RATE}..{MAX_RATE}.')
    lib = ctypes.CDLL(self._lib_path)
    initialized = False
    try:
      lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
      lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
      lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
      lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                   ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
      sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_parent,
                                          _INITIALIZE_DONT_EXIT)
      if sample_rate <= 0:
        raise RuntimeError(f'eSpeak NG failed to initialise with the data in '
                           f'{self._data_parent.decode()}/espeak-ng-data.')
      initialized = True
      lib.espeak_SetSynthCallback(self._callback)
      if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
        raise ValueError(f'eSpeak NG has no voice {voice!r}.')
      for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
        lib.espeak_SetParameter(parameter, int(value), 0)
      self._chunks = []
      data = text.encode() + b'\0'
      if lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None,
                          None) != _EE_OK:
        raise RuntimeError(f'eSpeak NG failed to synthesise {text!r}.')
      lib.espeak_Synchronize()
    finally:
      if initialized:
        lib.espeak_Terminate()
      handle = lib._handle  # pylint: disable=protected-access
      del lib
      _ctypes.dlclose(handle)
    chunks, self._chunks = self._chunks, []
    if not chunks:
      raise RuntimeError(f'eSpeak NG produced no audio for {text!r} with voice {voice!r}.')
    return np.concatenate(chunks).astype(np.float32) / 32768.0, sample_rate
