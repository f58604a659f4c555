r"""`synthetic_concepts`, the embedded default dataset: attribute-composed concepts in 4 modalities.

Every class is a *concept*, one combination of four attributes:

  size    (2):  small, large
  colour  (6):  red, orange, yellow, green, blue, purple
  pattern (4):  plain, striped, dotted, checkered
  shape   (6):  circle, square, triangle, star, cross, diamond

which gives 2 x 6 x 4 x 6 = 288 classes named 'size colour pattern shape', e.g.
'large red striped circle'. Every attribute value is shared by many classes, so classes held out
for meta-testing are new combinations of familiar attributes. The data is generated offline from
a seed; nothing is downloaded. The `default` config makes 20 examples per class (5,760 examples,
110 MB) in about a minute on 2 CPU cores: 64 s measured on a 2-core machine while another job kept
one core busy (86 CPU-seconds in all, spread over `num_workers` worker processes). `small` (16
classes x 4 examples, about 2 s) is for tests.

Each example (one instance of one concept) exists in every modality, and each modality is
rendered *independently* from the class attributes with its own nuisance variation:

  'image'   uint8 [32, 32, 3]: the shape (2x supersampled, numpy) in the concept's colour with
            its fill pattern (stripes, dots or checks in a lighter or darker tone, turning with
            the shape), the size class setting the radius, on a tinted gradient background with
            0-3 random lines and blobs (one more may occlude the shape); jittered colour,
            position, scale (+-15 %) and rotation (+-30 degrees); Gaussian pixel noise.
  'audio'   float32 [32, 40]: log-mel (`features.log_mel`, 1 s, 40 mels) of a 1 s, 16 kHz
            sound. Colour sets the pitch class (a whole-tone scale), size the octave (large is
            low), shape the timbre (near-sine, odd harmonics 1/k or 1/k^2, sawtooth, inharmonic
            bell partials, a formant), pattern the rhythm (sustained, regular pulses, random
            staccato notes, a two-note trill). Mixed with coloured noise at 0-12 dB SNR, often
            an unrelated chirp, and a random gain.
  'text'    int32 [16]: token ids (0 = padding) of a short description with synonyms ('big',
            'crimson', 'spotted', 'rhombus', ...), one of eight word orders, filler words
            ('there is', 'i think', ...) and an optional position phrase ('on the left'). The
            vocabulary, `vocabulary()` (95 ids), is fixed by the word inventory and stored in the
            dataset's metadata ('vocabulary'); descriptions never exceed 16 tokens.
  'speech'  float32 [64, 40]: log-mel (2 s, 40 mels) of the description's attribute phrase (same
            words and order as the text, without the fillers) spoken by eSpeak NG, the library
            the `espeakng-loader` package ships, driven through ctypes (`EspeakNG`): one of 48
            voices (6 English accents x 8 voice variants), a random rate (fast enough to fit the
            window), pitch and intonation range, a random onset and gain, 5-20 dB SNR noise.

Instances: `instance_latents(seed, example_id)` draws four factors per example (x and y position,
scale, rotation; each in [-1, 1]) that every modality expresses. The image places, scales and
turns the shape with them; the sound starts later the further right the shape is, is lower the
larger it is, and its tempo rises with the rotation angle; the text (and so the speech) may say
where the shape is. So equal `example_id`s across modalities (strong pairs) share more
than the class, while two examples of one class (weak pairs) share only the attributes. Every
other random choice comes from a per-example, per-modality stream
`numpy.random.default_rng([seed, example_id, stream])`, so no example depends on which others are
generated or in what order (or on `num_workers`): the `small` config's examples are the very same
examples as in `default`, and a seed always gives bit-identical arrays (given the same library
versions and CPU; BLAS runs on one thread while generating, so that no threaded reduction changes
the rounding).

Other features: 'label' (ClassLabel over the config's class names), 'example_id' (int64: index of
the concept among all 288 * 10_000 + instance index), 'attributes' (int32 [4], indices into
`SIZES`, `COLOURS`, `PATTERNS`, `SHAPES`) and 'description' (the text before tokenisation). One
split, 'train'.

Difficulty, 5-way 1-shot with 5 queries per class over random classes of the `default` build,
on raw features (mean-centred; 600 episodes; nearest neighbour / cosine / logistic regression):
image 42 / 46 / 47 %, audio 38 / 43 / 42 %, text (bag of words) 40 / 42 / 41 %, speech 21 % (at
chance, 20 %: words said by different voices at different rates do not match frame by frame).
With 15 shots per class, logistic regression on standardised raw features reaches 73 %
(image), 95 % (audio) and 30 % (speech), so the classes are learnable and the 1-shot target task
is hard for an encoder trained on its support alone, which is what cross-modal alignment is
meant to fix.

Build it (the episode pipeline does this on first use, in `config.data.data_dir`):

  builder = SyntheticConcepts(data_dir=..., config='default')   # or 'small'
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))

A different seed or attribute subset is a new config:
`SyntheticConcepts(config=SyntheticConceptsConfig(name='seed1', seed=1))`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import threadpoolctl

from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.builders import _espeak
from meta_align_jax.data.builders._espeak import EspeakNG
from meta_align_jax.data.tfsetup import tfds

# --- Attributes. The order of each tuple fixes attribute ids, class order and example ids.
SIZES = ('small', 'large')
COLOURS = ('red', 'orange', 'yellow', 'green', 'blue', 'purple')
PATTERNS = ('plain', 'striped', 'dotted', 'checkered')
SHAPES = ('circle', 'square', 'triangle', 'star', 'cross', 'diamond')

IMAGE_SIZE = 32
AUDIO_RATE = 16000
AUDIO_SECONDS = 1.0
AUDIO_FRAMES = 32
SPEECH_SECONDS = 2.0
SPEECH_FRAMES = 64
N_MELS = 40
TEXT_LENGTH = 16
_ID_STRIDE = 10_000  # example_id = concept index * _ID_STRIDE + instance index

# Independent random streams of one example.
_LATENT_STREAM, _IMAGE_STREAM, _AUDIO_STREAM, _TEXT_STREAM, _SPEECH_STREAM = range(5)


class Concept(NamedTuple):
  """One class: a combination of attribute values."""
  size: str
  colour: str
  pattern: str
  shape: str

  @property
  def name(self) -> str:
    return ' '.join(self)

  @property
  def attribute_ids(self) -> np.ndarray:
    """Indices of the attribute values in SIZES, COLOURS, PATTERNS, SHAPES, int32 [4]."""
    return np.array([SIZES.index(self.size), COLOURS.index(self.colour),
                     PATTERNS.index(self.pattern), SHAPES.index(self.shape)], np.int32)

  @property
  def index(self) -> int:
    """Position among all concepts (`all_concepts()`), whatever config is used."""
    size, colour, pattern, shape = (int(i) for i in self.attribute_ids)
    return ((size * len(COLOURS) + colour) * len(PATTERNS) + pattern) * len(SHAPES) + shape


def all_concepts(sizes: Sequence[str] = SIZES, colours: Sequence[str] = COLOURS,
                 patterns: Sequence[str] = PATTERNS,
                 shapes: Sequence[str] = SHAPES) -> list[Concept]:
  """The concepts made of the given attribute values, in canonical order."""
  for values, known, what in ((sizes, SIZES, 'size'), (colours, COLOURS, 'colour'),
                              (patterns, PATTERNS, 'pattern'), (shapes, SHAPES, 'shape')):
    unknown = [v for v in values if v not in known]
    if unknown or not values:
      raise ValueError(f'Unknown or no {what} values {list(values)}; known: {known}.')
  concepts = {Concept(*c) for c in itertools.product(sizes, colours, patterns, shapes)}
  return sorted(concepts, key=lambda c: c.index)  # canonical order, whatever order was given


class Latents(NamedTuple):
  """Instance factors shared by all modalities of one example, each in [-1, 1]."""
  x: float         # horizontal position (-1 = left)
  y: float         # vertical position (-1 = top)
  scale: float     # relative size within the size class
  rotation: float  # rotation, as a fraction of the maximum rotation


def instance_latents(seed: int, example_id: int) -> Latents:
  rng = np.random.default_rng([seed, example_id, _LATENT_STREAM])
  return Latents(*(float(v) for v in rng.uniform(-1.0, 1.0, size=4)))


# ------------------------------------------------------------------------------------------------
# Image.

_RGB = {'red': (215, 35, 35), 'orange': (240, 135, 20), 'yellow': (230, 215, 40),
        'green': (40, 170, 60), 'blue': (40, 80, 215), 'purple': (135, 45, 185)}
_RADIUS = {'small': 6.0, 'large': 10.5}   # pixels, before the +-15 % scale jitter
_MAX_ROTATION = np.pi / 6                 # shapes stay roughly upright: +-30 degrees
_SUPERSAMPLE = 2


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Inside test in object coordinates normalised by the radius (v points down)."""
  if shape == 'circle':
    return u * u + v * v <= 0.9 ** 2
  if shape == 'square':
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8
  if shape == 'triangle':  # equilateral, pointing up, circumradius 1.1
    apothem = 0.55
    normals = np.deg2rad([90.0, 210.0, 330.0])
    return np.all([np.cos(a) * u + np.sin(a) * v <= apothem for a in normals], axis=0)
  if shape == 'star':      # five points, one pointing up
    rho, phi = np.hypot(u, v), np.arctan2(v, u) + np.pi / 2
    return rho <= 0.42 + 0.63 * ((1.0 + np.cos(5.0 * phi)) / 2.0) ** 2
  if shape == 'cross':
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
  if shape == 'diamond':   # a rhombus taller than wide, so unlike a rotated square
    return np.abs(u) / 0.62 + np.abs(v) <= 1.0
  raise ValueError(f'Unknown shape {shape!r}.')


def _pattern_mask(pattern: str, ou: np.ndarray, ov: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
  """Where the secondary tone goes, in rotated object coordinates in pixels."""
  phase = rng.uniform(0.0, 10.0, size=2)
  if pattern == 'plain':
    return np.zeros(ou.shape, bool)
  if pattern == 'striped':
    return np.floor((ov + phase[0]) / 2.5) % 2 == 1
  if pattern == 'dotted':
    du = (ou + phase[0]) % 5.0 - 2.5
    dv = (ov + phase[1]) % 5.0 - 2.5
    return du * du + dv * dv <= 1.5 ** 2
  if pattern == 'checkered':
    return (np.floor((ou + phase[0]) / 3.5) + np.floor((ov + phase[1]) / 3.5)) % 2 == 1
  raise ValueError(f'Unknown pattern {pattern!r}.')


def _draw_clutter(canvas: np.ndarray, xx: np.ndarray, yy: np.ndarray,
                  rng: np.random.Generator) -> None:
  """Paints one random line segment or blob in a random colour onto `canvas` in place."""
  colour = rng.uniform(0, 255, size=3)
  cx, cy = rng.uniform(-IMAGE_SIZE / 2, IMAGE_SIZE / 2, size=2)
  if rng.random() < 0.6:  # a line segment
    angle = rng.uniform(0, np.pi)
    half = rng.uniform(3.0, 10.0)
    width = rng.uniform(0.5, 1.0)
    du, dv = np.cos(angle), np.sin(angle)
    along = np.clip((xx - cx) * du + (yy - cy) * dv, -half, half)
    dist = np.hypot(xx - cx - along * du, yy - cy - along * dv)
    mask = dist <= width
  else:  # a blob
    mask = np.hypot(xx - cx, yy - cy) <= rng.uniform(1.0, 2.5)
  canvas[mask] = colour


def render_image(concept: Concept, latents: Latents, rng: np.random.Generator) -> np.ndarray:
  """uint8 [IMAGE_SIZE, IMAGE_SIZE, 3]."""
  n = IMAGE_SIZE * _SUPERSAMPLE
  coords = (np.arange(n) + 0.5) / _SUPERSAMPLE - IMAGE_SIZE / 2   # pixel units, centred
  yy, xx = np.meshgrid(coords, coords, indexing='ij')

  # Background: a tinted linear gradient.
  base = rng.uniform(95, 145) + rng.normal(0, 5, size=3)
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / (IMAGE_SIZE / 2)
  canvas = base + rng.uniform(0, 15) * ramp[..., None] * rng.uniform(0.5, 1.0, size=3)
  for _ in range(rng.integers(0, 4)):
    _draw_clutter(canvas, xx, yy, rng)

  # The object.
  radius = _RADIUS[concept.size] * (1.0 + 0.15 * latents.scale)
  reach = 0.5 * max(2.0, IMAGE_SIZE / 2 - 0.9 * radius)
  cx, cy = latents.x * reach, latents.y * reach
  theta = latents.rotation * _MAX_ROTATION
  ou = np.cos(theta) * (xx - cx) + np.sin(theta) * (yy - cy)
  ov = -np.sin(theta) * (xx - cx) + np.cos(theta) * (yy - cy)
  inside = _shape_mask(concept.shape, ou / radius, ov / radius)
  primary = np.array(_RGB[concept.colour]) * rng.uniform(0.75, 1.15) + rng.normal(0, 12, size=3)
  if rng.random() < 0.5:
    secondary = 0.3 * primary                    # darker tone
  else:
    secondary = 0.45 * primary + 0.55 * 235.0    # lighter tone
  second = _pattern_mask(concept.pattern, ou, ov, rng)
  canvas[inside & ~second] = primary
  canvas[inside & second] = secondary
  if rng.random() < 0.3:
    _draw_clutter(canvas, xx, yy, rng)  # an occluder in front of the object

  image = canvas.reshape(IMAGE_SIZE, _SUPERSAMPLE, IMAGE_SIZE, _SUPERSAMPLE, 3).mean(axis=(1, 3))
  image += rng.normal(0, rng.uniform(4, 14), size=image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Audio.

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
    start = rng.uniform(0, 0.8)
    length = rng.uniform(0.1, 0.4)
    f_start, f_end = np.exp(rng.uniform(np.log(100), np.log(4000), size=2))
    burst_t = np.clip(t - start, 0, length)
    sweep = f_start * (f_end / f_start) ** (burst_t / length)
    gate = ((t >= start) & (t < start + length)).astype(np.float64)
    signal += rng.uniform(0.2, 0.6) * gate * np.sin(2 * np.pi * np.cumsum(sweep) / AUDIO_RATE)
  snr_db = rng.uniform(0.0, 12.0)
  signal += 10.0 ** (-snr_db / 20.0) * _coloured_noise(n, rng)
  signal *= rng.uniform(0.15, 0.5) / (np.abs(signal).max() + 1e-12)
  return signal.astype(np.float32)


def render_audio(concept: Concept, latents: Latents, rng: np.random.Generator) -> np.ndarray:
  """float32 [AUDIO_FRAMES, N_MELS] log-mel of `synthesize_audio`."""
  return features.log_mel(synthesize_audio(concept, latents, rng), AUDIO_RATE,
                          frames=AUDIO_FRAMES, seconds=AUDIO_SECONDS, n_mels=N_MELS)


# ------------------------------------------------------------------------------------------------
# Text.

_SYNONYMS = {
    'small': ('small', 'little', 'tiny'), 'large': ('large', 'big', 'huge'),
    'red': ('red', 'crimson', 'scarlet'), 'orange': ('orange', 'amber', 'tangerine'),
    'yellow': ('yellow', 'golden', 'lemon'), 'green': ('green', 'emerald', 'lime'),
    'blue': ('blue', 'azure', 'navy'), 'purple': ('purple', 'violet', 'lilac'),
    'plain': ('plain', 'solid', 'uniform'), 'striped': ('striped', 'stripy', 'banded'),
    'dotted': ('dotted', 'spotted', 'speckled'),
    'checkered': ('checkered', 'chequered', 'checked'),
    'circle': ('circle', 'disc', 'disk'), 'square': ('square', 'box', 'block'),
    'triangle': ('triangle', 'wedge'), 'star': ('star', 'starburst'),
    'cross': ('cross', 'plus'), 'diamond': ('diamond', 'rhombus', 'lozenge'),
}
# Word orders of the attribute phrase; {det} is 'a', 'one' or 'the'.
_TEMPLATES = (
    '{det} {size} {colour} {pattern} {shape}',
    '{det} {size} {pattern} {colour} {shape}',
    '{det} {colour} {shape} that is {size} and {pattern}',
    '{det} {pattern} {shape}, {size} and {colour}',
    '{det} {size} {shape}, {colour} and {pattern}',
    '{shape}: {colour}, {pattern}, {size}',
    '{det} {size} {colour} {shape} with a {pattern} pattern',
    '{det} {pattern} {colour} {shape} which is {size}',
)
_DETERMINERS = ('a', 'one', 'the')
_INTENSIFIERS = ('very', 'rather', 'quite')
_PREFIXES = ('there is', 'i see', 'look at', 'this is', 'a picture of', 'here is',
             'you can see', 'maybe')
_SUFFIXES = ('among some clutter', 'on a noisy background', 'i think', 'again', 'probably',
             'over there')
_POSITIONS = ('on the left', 'on the right', 'near the top', 'near the bottom', 'in the middle')


class Description(NamedTuple):
  text: str     # the full description (the 'text' feature, before tokenisation)
  spoken: str   # its attribute phrase, what the 'speech' feature says


def _position_phrase(latents: Latents) -> str:
  if abs(latents.x) >= abs(latents.y) and abs(latents.x) > 0.33:
    return _POSITIONS[0] if latents.x < 0 else _POSITIONS[1]
  if abs(latents.y) > 0.33:
    return _POSITIONS[2] if latents.y < 0 else _POSITIONS[3]
  return _POSITIONS[4]


def describe(concept: Concept, latents: Latents, rng: np.random.Generator) -> Description:
  """A short description with synonyms, a random word order and distractor words."""
  words = {attr: str(rng.choice(_SYNONYMS[getattr(concept, attr)]))
           for attr in ('size', 'colour', 'pattern', 'shape')}
  if rng.random() < 0.2:
    words['size'] = f"{rng.choice(_INTENSIFIERS)} {words['size']}"
  template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
  det = str(rng.choice(_DETERMINERS))
  core = template.format(det=det, **words)
  if core.startswith('a ') and core[2] in 'aeio':  # 'an amber', but 'a uniform'
    core = 'an' + core[1:]
  spoken = core
  parts = [core]
  if rng.random() < 0.5:
    parts.insert(0, str(rng.choice(_PREFIXES)))
  if rng.random() < 0.5:
    parts.append(_position_phrase(latents))
  if rng.random() < 0.5:
    parts.append(str(rng.choice(_SUFFIXES)))
  text = ' '.join(parts)
  if len(features.tokenize(text)) > TEXT_LENGTH:
    text = ' '.join(parts[:-1])  # drop the last distractor rather than truncate attributes
  return Description(text, spoken)


def word_inventory() -> list[str]:
  """Every word a description can contain, sorted."""
  slots = dict(det='', size='', colour='', pattern='', shape='')
  phrases = [*itertools.chain.from_iterable(_SYNONYMS.values()),
             *(t.format(**slots) for t in _TEMPLATES), *_DETERMINERS, 'an', *_INTENSIFIERS,
             *_PREFIXES, *_SUFFIXES, *_POSITIONS]
  return sorted(set(itertools.chain.from_iterable(features.tokenize(p) for p in phrases)))


def vocabulary() -> features.Vocabulary:
  """The fixed vocabulary of the 'text' feature (ids 0 = padding, 1 = unknown)."""
  return features.Vocabulary(word_inventory())


# ------------------------------------------------------------------------------------------------
# Speech.

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


# ------------------------------------------------------------------------------------------------
# Examples.

def make_example(concept: Concept, instance: int, *, seed: int, vocab: features.Vocabulary,
                 tts: EspeakNG | None) -> dict:
  """All features of one example except 'label' (which depends on the config's class list).

  `tts=None` skips speech (the 'speech' entry is then absent).
  """
  example_id = concept.index * _ID_STRIDE + instance
  latents = instance_latents(seed, example_id)

  def stream(index: int) -> np.random.Generator:
    return np.random.default_rng([seed, example_id, index])

  # One BLAS thread: results are then bit-identical wherever they are computed (a multi-threaded
  # matrix product may round differently), and librosa's small products run several times faster.
  with threadpoolctl.threadpool_limits(1, user_api='blas'):
    description = describe(concept, latents, stream(_TEXT_STREAM))
    example = {
        'example_id': np.int64(example_id),
        'attributes': concept.attribute_ids,
        'description': description.text,
        'image': render_image(concept, latents, stream(_IMAGE_STREAM)),
        'audio': render_audio(concept, latents, stream(_AUDIO_STREAM)),
        'text': vocab.encode(description.text, TEXT_LENGTH),
    }
    if tts is not None:
      example['speech'] = render_speech(description.spoken, stream(_SPEECH_STREAM), tts)
  return example


def _make_class_examples(job: tuple[Concept, int, int]) -> list[dict]:
  """All examples of one concept (the unit of work of a generation process)."""
  concept, num_examples, seed = job
  vocab = vocabulary()
  with EspeakNG() as tts:
    return [make_example(concept, i, seed=seed, vocab=vocab, tts=tts)
            for i in range(num_examples)]


@dataclasses.dataclass(eq=False, kw_only=True)
class SyntheticConceptsConfig(tfds.core.BuilderConfig):
  """Which attribute values make the classes, how many examples per class, and the seed."""
  sizes: tuple[str, ...] = SIZES
  colours: tuple[str, ...] = COLOURS
  patterns: tuple[str, ...] = PATTERNS
  shapes: tuple[str, ...] = SHAPES
  examples_per_class: int = 20
  seed: int = 0

  def __post_init__(self):
    if not 1 <= self.examples_per_class <= _ID_STRIDE:
      raise ValueError(f'examples_per_class={self.examples_per_class}: use 1..{_ID_STRIDE}.')
    if self.seed < 0:
      raise ValueError(f'seed={self.seed}: use a non-negative integer.')
    self.concepts()  # checks the attribute values

  def concepts(self) -> list[Concept]:
    return all_concepts(self.sizes, self.colours, self.patterns, self.shapes)

  def class_names(self) -> list[str]:
    return [c.name for c in self.concepts()]


class SyntheticConcepts(tfds.core.GeneratorBasedBuilder):
  """Attribute-composed concepts as image, sound, text and speech; generated from a seed."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      SyntheticConceptsConfig(
          name='default',
          description='All 288 concepts (2 sizes x 6 colours x 4 patterns x 6 shapes), '
                      '20 examples each.'),
      SyntheticConceptsConfig(
          name='small',
          description='16 concepts (2 sizes x 2 colours x 2 patterns x 2 shapes), 4 examples '
                      'each: for tests.',
          colours=('red', 'blue'), patterns=('plain', 'striped'), shapes=('circle', 'star'),
          examples_per_class=4),
  ]
  DEFAULT_CONFIG_NAME = 'default'

  def __init__(self, *, num_workers: int | None = None, **kwargs):
    """`num_workers`: processes that generate examples (default: the usable CPUs, at most 8;
    0 or 1: this process). The data does not depend on it. Other arguments go to TFDS.
    """
    super().__init__(**kwargs)
    if num_workers is None:
      cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
      num_workers = min(8, cpus or 1)
    self._num_workers = num_workers

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    vocab = vocabulary()
    return self.dataset_info_from_configs(
        description=_SHORT_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
            'audio': tfds.features.Tensor(shape=(AUDIO_FRAMES, N_MELS), dtype=np.float32),
            'speech': tfds.features.Tensor(shape=(SPEECH_FRAMES, N_MELS), dtype=np.float32),
            'text': tfds.features.Tensor(shape=(TEXT_LENGTH,), dtype=np.int32),
            'description': tfds.features.Text(),
            'attributes': tfds.features.Tensor(shape=(4,), dtype=np.int32),
            'label': tfds.features.ClassLabel(names=config.class_names()),
            'example_id': tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=None,
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(
            vocabulary=vocab.words, vocab_size=len(vocab),
            attributes={'size': list(SIZES), 'colour': list(COLOURS),
                        'pattern': list(PATTERNS), 'shape': list(SHAPES)},
            seed=config.seed, examples_per_class=config.examples_per_class,
            speech_voices=list(SPEECH_VOICES)),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    return {'train': self._generate_examples()}

  def _generate_examples(self) -> Iterator[tuple[int, dict]]:
    config = self.builder_config
    concepts = config.concepts()
    labels = {c: i for i, c in enumerate(concepts)}
    jobs = [(c, config.examples_per_class, config.seed) for c in concepts]
    with _map(_make_class_examples, jobs, self._num_workers) as results:
      for concept, examples in zip(concepts, results):
        for example in examples:
          yield int(example['example_id']), {**example, 'label': labels[concept]}


_map = _common.map_in_processes   # workers from a fork server: no fork after JAX has started


_SHORT_DESCRIPTION = (
    'Synthetic concepts, generated offline from a seed. Each class is a concept made of a size, '
    'colour, fill pattern and shape (e.g. "large red striped circle"); every example exists as a '
    '32x32 image, a 1 s synthetic sound (log-mel), a tokenised text description and that '
    'description spoken by eSpeak NG (log-mel), each rendered independently from the attributes '
    'with its own nuisance variation. Equal example_ids across modalities are strong pairs (they '
    'share position, scale and rotation).')

_CITATION = """\
@software{meta_align_jax_synthetic_concepts,
  title = {{synthetic\\_concepts}: attribute-composed concepts in image, sound, text and speech},
  author = {{meta\\_align\\_jax authors}},
  year = {2026},
  note = {Generated offline by meta\\_align\\_jax.data.builders.synthetic\\_concepts},
}
"""

registry.register('synthetic_concepts', SyntheticConcepts)
