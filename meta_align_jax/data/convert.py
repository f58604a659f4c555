"""Conversion of a dataset feature to the per-example input a config asks for.

Images: uint8 (or float) `[n, h, w, c]` -> float32 in [0, 1], resized once with
`tf.image.resize` (bilinear, antialiased when shrinking) to `config.<side>.input_shape[:2]`, and
grey channels tiled to 3 (or RGB averaged to 1). Audio, speech and text are features computed by
the builder at their final shape: they must match `config.<side>.input_shape` exactly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from meta_align_jax import io
from meta_align_jax.data.tfsetup import tf
from meta_align_jax.modalities import MODALITIES

_RESIZE_CHUNK = 1024


def _shape_error(side: str, input_shape, what: str, shape, hint: str = '') -> ValueError:
  return ValueError(
      f'config.{side}.input_shape={tuple(input_shape)} does not match {what}, whose examples have '
      f'shape {tuple(shape)}{hint}. Set config.{side}.input_shape to match the data.')


def to_input(x: np.ndarray, *, modality: str, input_shape: Sequence[int], side: str,
             what: str, vocab_size: int | None = None) -> np.ndarray:
  """Returns `x` `[n, ...]` converted to `[n, *input_shape]` for `modality`.

  Args:
    x: the feature as stored by the builder, `[n, ...]`.
    modality: `config.<side>.modality`.
    input_shape: `config.<side>.input_shape`.
    side: 'source' or 'target', used in error messages.
    what: how to name the data in error messages (e.g. "dataset 'fsdd' feature 'speech'").
    vocab_size: for text, `config.model.vocab_size`; token ids must lie below it.

  Raises:
    ValueError: the feature cannot be converted to `input_shape`, naming both shapes.
  """
  input_shape = tuple(int(d) for d in input_shape)
  if modality not in MODALITIES:
    raise ValueError(f'config.{side}.modality={modality!r}: use one of {MODALITIES}.')
  if modality == 'image':
    return _image(x, input_shape, side, what)
  if tuple(x.shape[1:]) != input_shape:
    raise _shape_error(side, input_shape, what, x.shape[1:])
  if modality == 'text':
    if not np.issubdtype(x.dtype, np.integer):
      raise ValueError(f'{what} holds {x.dtype} values; text features must be integer token ids.')
    x = x.astype(np.int32)
    if vocab_size is not None and x.size and int(x.max()) >= vocab_size:
      raise ValueError(f'config.model.vocab_size={vocab_size} is too small for {what}: its largest '
                       f'token id is {int(x.max())}.')
    return x
  return x.astype(np.float32)


def _image(x: np.ndarray, input_shape: tuple[int, ...], side: str, what: str) -> np.ndarray:
  if len(input_shape) != 3:
    raise _shape_error(side, input_shape, what, x.shape[1:], ' (images need (H, W, C))')
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise _shape_error(side, input_shape, what, x.shape[1:], ' (not an image)')
  h, w, c = input_shape
  if c not in (1, 3) or x.shape[-1] not in (1, 3):
    raise _shape_error(side, input_shape, what, x.shape[1:], ' (channels must be 1 or 3)')
  def resize(chunk):
    return tf.image.resize(chunk, (h, w), method='bilinear', antialias=True).numpy()
  return io.images_to_input(x, input_shape, resize, _RESIZE_CHUNK)
