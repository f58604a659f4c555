"""Classification and alignment losses: values, masks, gradients into both encoders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_align_jax import build_model, losses
from tests.tiny import tiny_config


def _separated(num_classes=4, per_class=3, dim=8, seed=0):
  rng = np.random.default_rng(seed)
  centres = np.eye(dim)[:num_classes] * 5.0
  labels = np.repeat(np.arange(num_classes), per_class)
  return centres, labels, rng


def test_proto_triplet_matches_the_reference_formula():
  rng = np.random.default_rng(0)
  o1, o2 = rng.normal(size=(12, 6)), rng.normal(size=(12, 6))
  y = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 0, 2])
  # The reference (per-sample loop over classes) written out in numpy.
  n1 = o1 / np.linalg.norm(o1, axis=1, keepdims=True)
  n2 = o2 / np.linalg.norm(o2, axis=1, keepdims=True)
  p1 = np.stack([n1[y == c].mean(0) for c in range(4)])
  p2 = np.stack([n2[y == c].mean(0) for c in range(4)])
  sim = p1 @ p2.T
  ref = sum(max(0.0, 0.5 + sim[i, k] - sim[k, k]) for i in range(4) for k in range(4) if i != k)
  ref /= len(y)
  got = losses.proto_triplet_loss(jnp.asarray(o1), jnp.asarray(o2), jnp.asarray(y), 4, 0.5)
  np.testing.assert_allclose(got, ref, rtol=1e-5)


@pytest.mark.parametrize('kind', ['proto_triplet', 'cosine', 'infonce'])
def test_alignment_near_zero_when_modalities_agree_and_classes_separate(kind):
  # InfoNCE pairs instances, so there every instance is its own class.
  centres, labels, rng = _separated(per_class=1 if kind == 'infonce' else 3)
  emb = centres[labels] + 0.01 * rng.normal(size=(len(labels), centres.shape[1]))
  loss = losses.alignment_loss(kind, jnp.asarray(emb), jnp.asarray(emb), jnp.asarray(labels),
                               num_classes=4, margin=0.5, temperature=0.05)
  assert float(loss) < 1e-3


@pytest.mark.parametrize('kind', ['proto_triplet', 'cosine', 'infonce'])
def test_alignment_positive_with_gradients_into_both_encoders(kind):
  c = tiny_config()
  model = build_model(c)
  params = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.random((6,) + c.source.input_shape, dtype=np.float32))
  xt = jnp.asarray(rng.random((6,) + c.target.input_shape, dtype=np.float32))
  y = jnp.asarray(np.repeat(np.arange(3), 2))

  def loss_fn(p):
    return losses.alignment_loss(kind, model.embed(p, xs, 'source'), model.embed(p, xt, 'target'),
                                 y, num_classes=3, margin=0.5, temperature=0.1)
  loss, grads = jax.value_and_grad(loss_fn)(params)
  assert float(loss) > 0.01
  for side in ('source', 'target'):
    norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads[side]))))
    assert norm > 1e-6, side
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(grads['head']))


@pytest.mark.parametrize('kind', ['proto_triplet', 'cosine', 'infonce'])
def test_alignment_padding_is_ignored(kind):
  rng = np.random.default_rng(1)
  s, t = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
  y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
  base = losses.alignment_loss(kind, jnp.asarray(s), jnp.asarray(t), jnp.asarray(y), num_classes=4)
  junk_s = np.concatenate([s, 100 * rng.normal(size=(3, 5))])
  junk_t = np.concatenate([t, 100 * rng.normal(size=(3, 5))])
  y_pad = np.concatenate([y, [-1, -1, -1]])
  padded = losses.alignment_loss(kind, jnp.asarray(junk_s), jnp.asarray(junk_t),
                                 jnp.asarray(y_pad), num_classes=4)
  np.testing.assert_allclose(padded, base, rtol=1e-5)
  g = jax.grad(lambda a: losses.alignment_loss(kind, a, jnp.asarray(junk_t), jnp.asarray(y_pad),
                                               num_classes=4))(jnp.asarray(junk_s))
  assert float(jnp.abs(g[8:]).sum()) == 0.0


def test_cross_entropy_and_accuracy_ignore_padding():
  logits = jnp.asarray([[5.0, 0.0], [0.0, 5.0], [9.0, -9.0]])
  y = jnp.asarray([0, 1, -1])
  np.testing.assert_allclose(losses.cross_entropy(logits, y),
                             losses.cross_entropy(logits[:2], y[:2]), rtol=1e-6)
  assert float(losses.accuracy(logits, jnp.asarray([0, 0, -1]))) == 0.5


def test_proto_logits_classify_by_nearest_prototype():
  support = jnp.asarray([[0.0, 0.0], [0.2, 0.0], [4.0, 4.0], [4.2, 4.0]])
  ys = jnp.asarray([0, 0, 1, 1])
  query = jnp.asarray([[0.1, 0.3], [3.9, 4.1]])
  logits = losses.proto_logits(support, ys, query, 3)   # class 2 absent: never predicted
  assert list(np.argmax(logits, -1)) == [0, 1]
  assert float(logits[0, 2]) < -1e8


def test_unknown_alignment_loss_names_the_field():
  with pytest.raises(ValueError, match='config.align.loss'):
    losses.alignment_loss('l2', jnp.zeros((2, 2)), jnp.zeros((2, 2)), jnp.zeros(2, int),
                          num_classes=2)
