"""The 'image' modality of `synthetic_concepts`: a coloured, patterned shape on clutter."""

from __future__ import annotations

import numpy as np

from meta_align_jax.data.builders.synthetic_concepts.concepts import (
    IMAGE_SIZE, Concept, Latents)

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

