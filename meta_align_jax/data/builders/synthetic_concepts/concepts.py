"""Attributes, concepts and per-instance latents of `synthetic_concepts` (all versions)."""

from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import numpy as np

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

