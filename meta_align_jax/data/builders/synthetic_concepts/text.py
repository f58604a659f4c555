"""The 'text' modality of `synthetic_concepts`: short descriptions with synonyms and fillers."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from meta_align_jax.data import features
from meta_align_jax.data.builders.synthetic_concepts.concepts import (
    TEXT_LENGTH, Concept, Latents)

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

