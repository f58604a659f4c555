"""Convolution as patches x matrix: per-task weights become one batched GEMM instead of a
grouped convolution.

Why: meta-learners adapt a copy of the encoder per task, so under `vmap` over tasks every
convolution has per-task weights. XLA lowers that to one grouped convolution (tasks as groups),
and cuDNN runs grouped convolutions on slow, often non-tensor-core kernels (docs/SPEED.md:
52-68 % of the reference model's step). `patch_conv` writes the same convolution as
`patches(x) @ kernel`: the `kh*kw` shifted views of the input concatenated on the channel axis
(one fused copy), times the kernel reshaped to `[kh*kw*C_in, C_out]`. Under `vmap` the product is
a batched matrix multiply with tasks as the GEMM batch, which cuBLAS/Triton run on tensor cores;
its transpose (the backward pass) is again batched GEMMs plus a fused sum of shifted pads.

The price is memory traffic: the patch matrix is `kh*kw` times the input. It pays where
grouped convolutions are slow (many tasks, GPU); on CPU and for one task at a time XLA's own
convolution is better. `config.execution.conv` picks (fast/execution.py).

`patch_conv` has the signature of `lax.conv_general_dilated` (what `flax.linen.Conv` calls);
cases it does not cover (dilation, feature groups, channels-first layouts) go to
`lax.conv_general_dilated` unchanged. Parameters are the same as `nn.Conv`'s, so checkpoints do
not depend on the choice.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import jax.numpy as jnp
from jax import lax

# patch_conv: strided convolutions of inputs with at most this many channels run on s x s blocks
# folded into channels (_space_to_depth_conv).
FEW_CHANNELS = 4


def _channels_last_numbers(ndim: int) -> lax.ConvDimensionNumbers:
  """What flax.linen.Conv passes: inputs `[N, *spatial, C]`, kernel `[*spatial, I, O]`."""
  spatial = tuple(range(1, ndim - 1))
  return lax.ConvDimensionNumbers(lhs_spec=(0, ndim - 1) + spatial,
                                  rhs_spec=(ndim - 1, ndim - 2) + tuple(range(ndim - 2)),
                                  out_spec=(0, ndim - 1) + spatial)


def _is_unit(values) -> bool:
  return values is None or all(int(v) == 1 for v in values)


def patch_conv(lhs, rhs, window_strides: Sequence[int], padding, lhs_dilation=None,
               rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
               batch_group_count: int = 1, precision=None, preferred_element_type=None,
               folded_conv=None):
  """`lax.conv_general_dilated` for channels-last inputs, computed as patches @ kernel.

  `folded_conv`: what computes the stride-1 convolution of a strided few-channel one on folded
  blocks (`_space_to_depth_conv`); default `patch_conv` (`pallas_conv` passes itself)."""
  nd = lhs.ndim
  plain = (feature_group_count == 1 and batch_group_count == 1 and _is_unit(lhs_dilation)
           and _is_unit(rhs_dilation) and rhs.ndim == nd
           # None means lax's channels-first default: left to lax.
           and dimension_numbers is not None
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
           == _channels_last_numbers(nd))
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  spatial_in = lhs.shape[1:-1]
  ksize = rhs.shape[:-2]
  c_in, c_out = rhs.shape[-2], rhs.shape[-1]
  if c_in != lhs.shape[-1]:
    raise ValueError(f'patch_conv: input has {lhs.shape[-1]} channels, kernel expects {c_in}.')
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(spatial_in, ksize, strides, padding)
  else:
    pads = [tuple(p) for p in padding]
  x = lax.pad(lhs, jnp.zeros((), lhs.dtype),
              [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)])
  out_sp = [(x.shape[1 + i] - ksize[i]) // strides[i] + 1 for i in range(nd - 2)]
  if min(out_sp) < 1:
    raise ValueError(f'patch_conv: kernel {ksize} larger than the padded input {x.shape[1:-1]}.')
  if (nd == 4 and c_in <= FEW_CHANNELS and len(set(strides)) == 1 and strides[0] > 1
      and min(ksize) > strides[0]):
    return _space_to_depth_conv(x, rhs, strides[0], out_sp, dimension_numbers, precision,
                                preferred_element_type, folded_conv or patch_conv)
  views = []
  for offs in itertools.product(*(range(k) for k in ksize)):   # same order as kernel.reshape
    start = (0,) + offs + (0,)
    limit = ((x.shape[0],) + tuple(o + s * (n - 1) + 1 for o, s, n in zip(offs, strides, out_sp))
             + (c_in,))
    views.append(lax.slice(x, start, limit, (1,) + strides + (1,)))
  patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
  kernel = rhs.reshape(-1, c_out)
  return lax.dot_general(patches, kernel, (((nd - 1,), (0,)), ((), ())), precision=precision,
                         preferred_element_type=preferred_element_type)


def _space_to_depth_conv(x, rhs, s, out_sp, dimension_numbers, precision,
                         preferred_element_type, conv):
  """A stride-`s` VALID convolution of the padded `x` as a stride-1 one on `s x s` blocks.

  Few input channels (an image stem: 7x7, stride 2, 3 channels) would make `kh*kw` patch views
  of `c_in` elements each, which XLA concatenates slowly (the stem was the largest kernel of the
  224 px reference step). Folding each `s x s` block of pixels into channels gives
  `ceil(kh/s) * ceil(kw/s)` views of `s*s*c_in` channels instead, with the kernel zero-padded to
  a multiple of `s` and folded the same way: the same sums, term by term.
  """
  b, c_in, c_out = x.shape[0], rhs.shape[-2], rhs.shape[-1]
  kq = [-(-k // s) for k in rhs.shape[:2]]
  need = [o - 1 + k for o, k in zip(out_sp, kq)]          # blocks each output window spans
  x = x[:, :need[0] * s, :need[1] * s]
  x = jnp.pad(x, ((0, 0), (0, need[0] * s - x.shape[1]), (0, need[1] * s - x.shape[2]), (0, 0)))
  xs = x.reshape(b, need[0], s, need[1], s, c_in).transpose(0, 1, 3, 2, 4, 5)
  xs = xs.reshape(b, need[0], need[1], s * s * c_in)
  kp = jnp.pad(rhs, ((0, kq[0] * s - rhs.shape[0]), (0, kq[1] * s - rhs.shape[1]), (0, 0),
                     (0, 0)))
  kp = kp.reshape(kq[0], s, kq[1], s, c_in, c_out).transpose(0, 2, 1, 3, 4, 5)
  kp = kp.reshape(kq[0], kq[1], s * s * c_in, c_out)
  return conv(xs, kp, (1, 1), 'VALID', dimension_numbers=dimension_numbers,
              precision=precision, preferred_element_type=preferred_element_type)
