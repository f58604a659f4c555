"""Light augmentation of training episodes, drawn inside the train step (`config.augment`).

Images `[H, W, C]`: a random shift of up to `shift` pixels along H and W (zero fill) and, with
`flip`, a random horizontal flip. Spectrograms `[frames, mels]`: a random shift of up to `shift`
frames in time (zero fill), a random offset in `[-gain, gain]` added to the log-mel values, and
with `mask` > 0 one time band and one mel band of up to `mask` rows set to the example's minimum.
Token ids (text) are never augmented.

It applies to the support and query inputs of the meta-learning tasks (`config.task.meta_on`),
never to alignment pairs or evaluation episodes. Every example gets its own draw from
`step_key(rng, step, device)`: the train step folds the step (and the device index under pmap)
into the loop's key, so the augmented batch of step s is a pure function of (seed, s) whichever
feed (host tf.data or device gather) produced the batch, and a resumed run is exact. Pure JAX;
rotations as new classes are a data-side transform (`meta_align_jax.data.augment`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

STREAM = 0xA06   # folded into the step's key: augmentation draws never reuse the step's keys


def enabled(config) -> bool:
  a = config.get('augment', None)
  return a is not None and bool(a.get('shift', 0) or a.get('flip', False)
                                or a.get('gain', 0.0) or a.get('mask', 0))


def check(config) -> None:
  """`config.augment` values; raises ValueError naming the field."""
  a = config.get('augment', None)
  if a is None:
    return
  for name in ('shift', 'mask'):
    v = a.get(name, 0)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
      raise ValueError(f'config.augment.{name}={v!r}: must be an integer >= 0 (0 disables it).')
  for name in ('flip', 'rotation_classes'):
    v = a.get(name, False)
    if not isinstance(v, (bool, np.bool_)):
      raise ValueError(f'config.augment.{name}={v!r}: must be True or False.')
  gain = a.get('gain', 0.0)
  if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 <= gain < np.inf:
    raise ValueError(f'config.augment.gain={gain!r}: must be a finite number >= 0.')
  sides = tuple(config.task.meta_on)
  for side in sides:
    shape = tuple(config[side].input_shape)
    modality = config[side].modality
    if modality == 'image' and a.get('shift', 0) >= min(shape[:2]):
      raise ValueError(f'config.augment.shift={a.shift} is not smaller than the {shape[:2]} '
                       f'images of config.{side}.input_shape.')
    if modality in ('audio', 'speech') and len(shape) == 2:
      for name in ('shift', 'mask'):
        if a.get(name, 0) >= shape[0]:
          raise ValueError(f'config.augment.{name}={a[name]} is not smaller than the {shape[0]} '
                           f'frames of config.{side}.input_shape={shape}.')
  if a.get('rotation_classes', False):
    # (imported here, as in validation.check_modalities: no import cycle at module load)
    from meta_align_jax.models import registry  # pylint: disable=g-import-not-at-top
    shapes = [tuple(config[s].input_shape) for s in registry.sides(config)
              if config[s].modality == 'image']
    if not shapes or any(len(s) != 3 or s[0] != s[1] for s in shapes):
      raise ValueError('config.augment.rotation_classes=True rotates square images [H, H, C]; '
                       'the config has no image side with a square config.<side>.input_shape.')


def step_key(rng, step, device=None):
  """The key of a step's augmentation draws, from the loop's key `rng`."""
  key = jax.random.fold_in(jax.random.fold_in(rng, step), STREAM)
  return key if device is None else jax.random.fold_in(key, device)


def _shift(x, key, max_shift, axes):
  """Shifts one example by independent offsets in [-max_shift, max_shift] along `axes`."""
  offsets = jax.random.randint(key, (len(axes),), -max_shift, max_shift + 1)
  pad = [(0, 0)] * x.ndim
  for a in axes:
    pad[a] = (max_shift, max_shift)
  padded = jnp.pad(x, pad)
  start = [0] * x.ndim
  for i, a in enumerate(axes):
    start[a] = max_shift - offsets[i]
  return jax.lax.dynamic_slice(padded, start, x.shape)


def _band(x, key, width, axis):
  k1, k2 = jax.random.split(key)
  w = jax.random.randint(k1, (), 0, width + 1)
  start = jax.random.randint(k2, (), 0, x.shape[axis] - w + 1)
  pos = jnp.arange(x.shape[axis])
  inside = (pos >= start) & (pos < start + w)
  inside = inside.reshape([-1 if a == axis else 1 for a in range(x.ndim)])
  return jnp.where(inside, x.min(), x)


def augment_example(x, key, *, modality: str, shift: int = 0, flip: bool = False,
                    gain: float = 0.0, mask: int = 0):
  """One example `x` augmented with the draws of `key` (see the module docstring)."""
  ks = jax.random.split(key, 5)
  if modality == 'image':
    if shift:
      x = _shift(x, ks[0], shift, (0, 1))
    if flip:
      x = jnp.where(jax.random.bernoulli(ks[1]), x[:, ::-1], x)
  elif modality in ('audio', 'speech') and x.ndim == 2:
    if shift:
      x = _shift(x, ks[0], shift, (0,))
    if gain:
      x = x + jax.random.uniform(ks[2], (), x.dtype, -gain, gain)
    if mask:
      x = _band(_band(x, ks[3], mask, 0), ks[4], mask, 1)
  return x


def augment_tasks(config, tasks: dict, key) -> dict:
  """The support and query inputs of `tasks[side]` (leading axes: tasks, examples) for every
  side of `config.task.meta_on`, augmented with the draws of `key`; other entries unchanged."""
  if not enabled(config):
    return tasks
  a = config.augment
  out = dict(tasks)
  for i, side in enumerate(tuple(config.task.meta_on)):
    if side not in tasks:
      continue
    modality = config[side].modality
    fn = lambda x, k, m=modality: augment_example(
        x, k, modality=m, shift=int(a.shift), flip=bool(a.flip), gain=float(a.gain),
        mask=int(a.mask))
    parts = dict(tasks[side])
    for j, part in enumerate(('support', 'query')):
      x = parts[part]['x']
      lead = x.shape[:2]
      keys = jax.random.split(jax.random.fold_in(key, 2 * i + j), lead[0] * lead[1])
      flat = x.reshape((-1,) + x.shape[2:])
      parts[part] = dict(parts[part], x=jax.vmap(fn)(flat, keys).reshape(x.shape))
    out[side] = parts
  return out
