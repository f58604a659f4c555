"""The LSTM's hand-written backward pass equals JAX's autodiff of the plain scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_align_jax.fast.lstm import lstm_recurrence, lstm_recurrence_reference
from meta_align_jax.models.sequence import reverse_valid


def _inputs(seed=0, b=3, l=7, h=4):
  rng = np.random.default_rng(seed)
  gx = jnp.asarray(rng.normal(size=(b, l, 4 * h)), jnp.float32)
  wh = jnp.asarray(rng.normal(size=(h, 4 * h)) * 0.5, jnp.float32)
  lengths = np.array([l, 4, 1][:b])
  mask = jnp.asarray(np.arange(l)[None, :] < lengths[:, None])
  w_out = jnp.asarray(rng.normal(size=(b, l, h)), jnp.float32)
  return gx, wh, mask, w_out


def _loss(f, mask, w_out):
  # Only valid positions feed the loss, as in the encoders' masked pooling.
  return lambda gx, wh: jnp.sum(jnp.where(mask[..., None], jnp.tanh(f(gx, wh, mask)) * w_out, 0))


def test_forward_and_first_order_gradients_equal_autodiff_of_the_scan():
  gx, wh, mask, w_out = _inputs()
  np.testing.assert_allclose(lstm_recurrence(gx, wh, mask), lstm_recurrence_reference(gx, wh, mask),
                             rtol=1e-6, atol=1e-6)
  got = jax.grad(_loss(lstm_recurrence, mask, w_out), (0, 1))(gx, wh)
  want = jax.grad(_loss(lstm_recurrence_reference, mask, w_out), (0, 1))(gx, wh)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Padded steps get no gradient.
  assert float(jnp.abs(got[0][1, 4:]).max()) == 0.0


def test_unrolled_time_loop_gives_the_same_gradients():
  gx, wh, mask, w_out = _inputs(3)
  f4 = lambda gx, wh, mask: lstm_recurrence(gx, wh, mask, unroll=4)
  got = jax.grad(_loss(f4, mask, w_out), (0, 1))(gx, wh)
  want = jax.grad(_loss(lstm_recurrence, mask, w_out), (0, 1))(gx, wh)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_second_order_gradients_equal_autodiff_of_the_scan():
  """What second-order MAML needs: the gradient of a function of the gradient."""
  gx, wh, mask, w_out = _inputs(1)

  def outer(f):
    def fn(wh):
      g = jax.grad(_loss(f, mask, w_out), 1)(gx, wh)
      return _loss(f, mask, w_out)(gx, wh - 0.1 * g)
    return jax.grad(fn)(wh)

  np.testing.assert_allclose(outer(lstm_recurrence), outer(lstm_recurrence_reference),
                             rtol=1e-4, atol=1e-5)


def test_vmapped_per_task_weights_equal_a_loop():
  gx, wh, mask, w_out = _inputs(2)
  whs = jnp.stack([wh, 0.5 * wh, -wh])
  grad = lambda w: jax.grad(_loss(lstm_recurrence, mask, w_out), 1)(gx, w)
  got = jax.vmap(grad)(whs)
  for t in range(3):
    want = jax.grad(_loss(lstm_recurrence_reference, mask, w_out), 1)(gx, whs[t])
    np.testing.assert_allclose(got[t], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('lengths', [[5, 3, 0], [5, 5, 5]])
def test_reverse_valid_reverses_the_valid_prefix_and_is_its_own_inverse(lengths):
  x = jnp.arange(15.0).reshape(3, 5)[..., None]
  lengths = jnp.asarray(lengths)
  r = reverse_valid(x, lengths)
  np.testing.assert_array_equal(r[0, :5, 0], x[0, ::-1, 0])
  if int(lengths[1]) == 3:
    np.testing.assert_array_equal(r[1, :, 0], [7.0, 6.0, 5.0, 8.0, 9.0])
    np.testing.assert_array_equal(r[2], x[2])
  np.testing.assert_array_equal(reverse_valid(r, lengths), x)
