"""Label noise, drawn with stateless TF random ops so that it is part of the pure episode function.

Kinds (`config.data.noise_kind`), at rate p (`config.data.target_noise` / `align_noise`), among the
`num_classes` episode-local classes:
  symmetric: with probability p the label is replaced by one of the *other* classes, uniformly;
  pairflip:  with probability p class c becomes (c + 1) mod num_classes (class-conditional).
Both change a label with probability exactly p, so the realised rate estimates p directly.
"""

from __future__ import annotations

from meta_align_jax.data.tfsetup import tf

KINDS = ('symmetric', 'pairflip')


def check(config) -> None:
  """Raises ValueError for an unknown noise kind or a rate outside [0, 1]."""
  if config.data.noise_kind not in KINDS:
    raise ValueError(f'config.data.noise_kind={config.data.noise_kind!r}: use one of {KINDS}.')
  for field in ('target_noise', 'align_noise'):
    rate = float(config.data[field])
    if not 0.0 <= rate <= 1.0:
      raise ValueError(f'config.data.{field}={rate} must lie in [0, 1].')


def corrupt(seed: tf.Tensor, labels: tf.Tensor, num_classes: int, rate: float, kind: str
            ) -> tf.Tensor:
  """Noisy copy of int32 `labels` (values in [0, num_classes)), a pure function of `seed`.

  Args:
    seed: int64 `[2]` stateless seed.
    labels: int32 tensor of clean labels.
    num_classes: number of classes the labels range over (static).
    rate: probability that a label is changed (static).
    kind: 'symmetric' or 'pairflip'.
  """
  if kind not in KINDS:
    raise ValueError(f'config.data.noise_kind={kind!r}: use one of {KINDS}.')
  if rate <= 0.0 or num_classes < 2:
    return labels
  flip_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  flip = tf.random.stateless_uniform(tf.shape(labels), flip_seed) < rate
  if kind == 'symmetric':
    offset = tf.random.stateless_uniform(tf.shape(labels), offset_seed, minval=1,
                                         maxval=num_classes, dtype=tf.int32)
  else:
    offset = tf.ones_like(labels)
  return tf.where(flip, tf.math.floormod(labels + offset, num_classes), labels)
