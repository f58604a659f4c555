"""The 'image' modality of `synthetic_concepts` v2: a framed object under strong lighting nuisance.

v1 (`image.py`) moves and turns the shape over the whole canvas, which no linear read-out learns
even from every class. v2 keeps the object near the centre (the instance latents still shift
it by up to `SHIFT` pixels, scale it and turn it by up to `MAX_ROTATION`) and puts the variation
where a projection learnt from many classes can discount it but raw similarity cannot: a
background of random colour and brightness with a random gradient, a global colour cast and
exposure, clutter and pixel noise. The concept's colour, shape, size and fill pattern are
rendered as in v1.
"""

from __future__ import annotations

import numpy as np

from meta_align_jax.data.builders.synthetic_concepts import image as v1
from meta_align_jax.data.builders.synthetic_concepts.concepts import (
    IMAGE_SIZE, Concept, Latents)

SHIFT = 0.75                  # pixels, times the latent position
MAX_ROTATION = np.pi / 24     # +-7.5 degrees
SCALE = 0.1                   # +- relative size within the size class
BACKGROUND = (0.0, 255.0)     # per-channel background level
GRADIENT = 90.0               # +- amplitude of the background ramp across the canvas
CAST = (0.9, 1.1)             # per-channel gain (colour cast)
EXPOSURE = (0.85, 1.15)       # global gain
CLUTTER = 2                   # at most this many lines / blobs
NOISE = (4.0, 14.0)           # pixel noise std range
PHASE = 0.5                   # +- pixels of fill-pattern phase


def _pattern_mask(pattern: str, ou: np.ndarray, ov: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
  """v1's fill patterns, anchored to the object (phase jitter up to PHASE pixels)."""
  pu, pv = rng.uniform(-PHASE, PHASE, size=2)
  if pattern == 'plain':
    return np.zeros(ou.shape, bool)
  if pattern == 'striped':
    return np.floor((ov + pv) / 3.0) % 2 == 1
  if pattern == 'dotted':
    du = (ou + pu) % 5.0 - 2.5
    dv = (ov + pv) % 5.0 - 2.5
    return du * du + dv * dv <= 1.5 ** 2
  if pattern == 'checkered':
    return (np.floor((ou + pu) / 3.5) + np.floor((ov + pv) / 3.5)) % 2 == 1
  raise ValueError(f'Unknown pattern {pattern!r}.')


def render_image(concept: Concept, latents: Latents, rng: np.random.Generator) -> np.ndarray:
  """uint8 [IMAGE_SIZE, IMAGE_SIZE, 3]."""
  n = IMAGE_SIZE * v1._SUPERSAMPLE
  coords = (np.arange(n) + 0.5) / v1._SUPERSAMPLE - IMAGE_SIZE / 2
  yy, xx = np.meshgrid(coords, coords, indexing='ij')

  base = rng.uniform(*BACKGROUND, size=3)
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / (IMAGE_SIZE / 2)
  canvas = base + rng.uniform(-GRADIENT, GRADIENT, size=3) * ramp[..., None]
  for _ in range(rng.integers(0, CLUTTER + 1)):
    v1._draw_clutter(canvas, xx, yy, rng)

  radius = v1._RADIUS[concept.size] * (1.0 + SCALE * latents.scale)
  cx, cy = latents.x * SHIFT, latents.y * SHIFT
  theta = latents.rotation * MAX_ROTATION
  ou = np.cos(theta) * (xx - cx) + np.sin(theta) * (yy - cy)
  ov = -np.sin(theta) * (xx - cx) + np.cos(theta) * (yy - cy)
  inside = v1._shape_mask(concept.shape, ou / radius, ov / radius)
  primary = np.array(v1._RGB[concept.colour]) * rng.uniform(0.85, 1.1) + rng.normal(0, 8, size=3)
  secondary = 0.35 * primary
  second = _pattern_mask(concept.pattern, ou, ov, rng)
  canvas[inside & ~second] = primary
  canvas[inside & second] = secondary

  canvas = canvas * rng.uniform(*CAST, size=3) * rng.uniform(*EXPOSURE)
  image = canvas.reshape(IMAGE_SIZE, v1._SUPERSAMPLE, IMAGE_SIZE, v1._SUPERSAMPLE, 3).mean(
      axis=(1, 3))
  image += rng.normal(0, rng.uniform(*NOISE), size=image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)
