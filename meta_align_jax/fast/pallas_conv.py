"""Stride-1 SAME convolution as an implicit GEMM in Pallas: no patch matrix in memory.

Why: `patch_conv` (fast/patch_conv.py) turns a convolution with per-task weights into one batched
GEMM, but it writes the `kh*kw` times larger patch matrix to memory and, in the backward pass,
the equally large gradient of it. For Conv-4 at 84x84 those copies were about a quarter of the
step on an H100 (docs/SPEED.md). Here the copies are never made.

How: pad the input spatially and flatten it to rows `[B*Hp*Wp, C]` (`Hp, Wp` = padded height and
width). Computed on that padded grid, the output row `q` is `sum_t x[q + off_t] @ w_t` with a
constant row offset `off_t = i*Wp + j` per kernel tap `t = (i, j)`: nine contiguous row windows
of one array. The kernel (`shift_gemm`) loads those windows tile by tile and accumulates nine
tensor-core products in registers; rows of the padded grid that are not outputs (the right and
bottom borders, where a window wraps) are computed and dropped.

The backward pass closes over two kernels:
- input gradient: the same shifted GEMM over the output gradient, with mirrored offsets and the
  transposed taps;
- weight gradient (`shift_wgrad`): `dw_t = sum_q x[q + off_t]^T dy[q]`, one program per row
  chunk, tap and channel tile, the chunks' partial sums added after.
Each op's VJP is written with the two ops, so the convolution can be differentiated again
(second-order MAML differentiates the inner loop's gradient).

Under `vmap` over tasks the Pallas batching rule adds the task as a grid axis: one launch runs
every task's GEMM. Covered: 2-D, channels-last, stride 1, no dilation or groups, any kernel size
and padding (SAME, VALID, explicit), output channels that are powers of two from 16 (Triton's
tile rule) to `MAX_CHANNELS`, input channels from `MIN_IN_CHANNELS` (zero-padded to such a
tile). Strided convolutions of few-channel inputs run here as stride-1 ones on folded pixel
blocks. Other convolutions go to `patch_conv` (`pallas_conv` has
`lax.conv_general_dilated`'s signature, so `flax.linen.Conv` takes it as `conv_general_dilated`;
`precision` is not used: the kernels multiply in the operands' dtype with float32 accumulation,
TF32 for float32 operands on GPU). The kernels are Triton kernels, for GPUs; on CPU they run in
Pallas's interpreter, which is for tests only.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from meta_align_jax.fast.patch_conv import _channels_last_numbers, _is_unit, patch_conv

# Tiles of the two kernels: the fastest of bench/tune_pallas.py's grid on an H100 for Conv-4's
# 64-channel blocks at 42x42 and 21x21, 64 tasks (2026-11-26: shifted GEMM 1.244 -> 1.167 ms,
# weight gradient 1.248 -> 1.092 ms over 128-row tiles). Row tiles are powers of two; `gemm_bn`,
# `gemm_bk`, `wgrad_bc`, `wgrad_bo` are capped at the channel counts.
TUNING = dict(
    gemm_bm=256, gemm_bn=64, gemm_bk=64, gemm_warps=8, gemm_stages=4,
    wgrad_bm=256, wgrad_bc=64, wgrad_bo=64, wgrad_warps=4, wgrad_stages=3,
    wgrad_blocks_per_split=64,
)


class _Geom(NamedTuple):
  """Static description of one shifted GEMM: where each tap's rows start (tiles: `TUNING`).

  Tap `t = (i, j)` reads rows `q + i*wp + j`, or `q + M - (i*wp + j)` when `mirrored` (the
  input gradient), with `M = (kh-1)*wp + kw-1` the largest offset."""
  wp: int
  kh: int
  kw: int
  mirrored: bool
  interpret: bool

  @property
  def max_offset(self) -> int:
    return (self.kh - 1) * self.wp + self.kw - 1

  def offset(self, t):
    """Row offset of tap t (a Python int or a traced program id)."""
    off = (t // self.kw) * self.wp + t % self.kw
    return self.max_offset - off if self.mirrored else off

  @property
  def offsets(self) -> tuple:
    return tuple(self.offset(t) for t in range(self.kh * self.kw))


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def _row_tile(key: str, dtype) -> int:
  """Row tile for this dtype: the tuned (bfloat16) tile scaled to the same bytes, so float32
  operands fit the shared memory the bfloat16 tiles were tuned to (227 KiB on an H100)."""
  return max(16, TUNING[key] * 2 // jnp.dtype(dtype).itemsize)


def _row_multiple() -> int:
  """Row counts are padded to this: a whole number of tiles for both kernels."""
  return max(TUNING['gemm_bm'], TUNING['wgrad_bm'])


def _pl():
  from jax.experimental import pallas as pl   # imported on use: the core does not need it
  return pl


def _params(geom: _Geom, warps: int, stages: int):
  if geom.interpret:
    return None
  from jax.experimental.pallas import triton as pltriton
  return pltriton.CompilerParams(num_warps=warps, num_stages=stages)


def _pad_rows(x, rows: int, front: int = 0):
  back = rows - front - x.shape[0]
  return x if front == 0 and back <= 0 else jnp.pad(x, ((front, max(back, 0)), (0, 0)))


# ----------------------------------------------------------------------------- raw kernels


def _shift_gemm_call(xf, w, geom: _Geom, rows_out: int):
  """y[q] = sum_t xf[q + off_t] @ w[t] for q < rows_out; xf is padded as needed."""
  pl = _pl()
  taps, c, o = w.shape
  bm = _row_tile('gemm_bm', xf.dtype)
  rows_pad = _round_up(rows_out, bm)
  xf = _pad_rows(xf, rows_pad + geom.max_offset)
  bk, bn = min(c, TUNING['gemm_bk']), min(o, TUNING['gemm_bn'])
  offsets = geom.offsets

  def kernel(x_ref, w_ref, o_ref):
    row0 = pl.program_id(0) * bm
    acc = jnp.zeros((bm, bn), jnp.float32)
    for t, off in enumerate(offsets):
      for kc in range(c // bk):
        xs = x_ref[pl.ds(row0 + off, bm), pl.ds(kc * bk, bk)]
        ws = w_ref[t, pl.ds(kc * bk, bk), :]
        acc += jnp.dot(xs, ws, preferred_element_type=jnp.float32)
    o_ref[...] = acc.astype(o_ref.dtype)

  y = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((rows_pad, o), xf.dtype),
      grid=(rows_pad // bm, o // bn),
      in_specs=[pl.BlockSpec(), pl.BlockSpec((taps, c, bn), lambda i, j: (0, 0, j))],
      out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
      interpret=geom.interpret,
      compiler_params=_params(geom, TUNING['gemm_warps'], TUNING['gemm_stages']),
      name='shift_gemm',
  )(xf, w)
  return y if rows_pad == rows_out else y[:rows_out]


def _shift_wgrad_call(xf, dy, geom: _Geom):
  """dw[t] = sum_q xf[q + off_t]^T dy[q] over the rows of dy, in float32: [taps, C, O]."""
  pl = _pl()
  bm = _row_tile('wgrad_bm', xf.dtype)
  rows = _round_up(dy.shape[0], bm)
  dy = _pad_rows(dy, rows)
  xf = _pad_rows(xf, rows + geom.max_offset)
  n_blocks = rows // bm
  splits = max(1, n_blocks // TUNING['wgrad_blocks_per_split'])
  per_split = -(-n_blocks // splits)
  splits = -(-n_blocks // per_split)
  c, o = xf.shape[1], dy.shape[1]
  bc, bo = min(c, TUNING['wgrad_bc']), min(o, TUNING['wgrad_bo'])
  taps = geom.kh * geom.kw
  dims = (((0,), (0,)), ((), ()))

  def trip_count(s):
    # The last chunk may be short: no padding copy of dy to a whole number of chunks.
    return jnp.minimum(per_split, n_blocks - s * per_split)

  # One program per (row chunk, tap, channel tile): the nine taps of a chunk re-read the same
  # rows, from L2. (One program accumulating all nine taps in registers was 3x slower: it runs
  # out of registers and shared memory at 64 channels.)
  def kernel(x_ref, dy_ref, o_ref):
    s, t = pl.program_id(0), pl.program_id(1)
    ci, oi = pl.program_id(2), pl.program_id(3)
    off = geom.offset(t)

    def body(j, acc):
      r0 = (s * per_split + j) * bm
      dys = dy_ref[pl.ds(r0, bm), pl.ds(oi * bo, bo)]
      xs = x_ref[pl.ds(r0 + off, bm), pl.ds(ci * bc, bc)]
      return acc + lax.dot_general(xs, dys, dims, preferred_element_type=jnp.float32)

    o_ref[...] = lax.fori_loop(0, trip_count(s), body, jnp.zeros((bc, bo), jnp.float32))

  parts = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((splits, taps, c, o), jnp.float32),
      grid=(splits, taps, c // bc, o // bo),
      in_specs=[pl.BlockSpec(), pl.BlockSpec()],
      out_specs=pl.BlockSpec((None, None, bc, bo), lambda s, t, i, j: (s, t, i, j)),
      interpret=geom.interpret,
      compiler_params=_params(geom, TUNING['wgrad_warps'], TUNING['wgrad_stages']),
      name='shift_wgrad',
  )(xf, dy)
  return parts.sum(0)


# ----------------------------------------------------------------------------- differentiable ops


def _input_grad(dy, w, geom: _Geom, rows_in: int):
  """d/dxf of sum_q <dy[q], sum_t xf[q + off_t] @ w[t]>: a shifted GEMM over dy with the
  mirrored offsets, `dy` shifted down by the largest offset (one padding copy)."""
  m = geom.max_offset
  dy_ext = _pad_rows(dy, _round_up(rows_in, TUNING['gemm_bm']) + m, front=m)
  return shift_gemm(dy_ext, jnp.swapaxes(w, 1, 2), geom._replace(mirrored=not geom.mirrored),
                    rows_in)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def shift_gemm(xf, w, geom: _Geom, rows_out: int):
  return _shift_gemm_call(xf, w, geom, rows_out)


def _shift_gemm_fwd(xf, w, geom, rows_out):
  # The op itself, not the raw kernel: an outer derivative (second order) differentiates this.
  return shift_gemm(xf, w, geom, rows_out), (xf, w)


def _shift_gemm_bwd(geom, rows_out, res, dy):
  xf, w = res
  dxf = _input_grad(dy, w, geom, xf.shape[0]).astype(xf.dtype)
  dw = shift_wgrad(xf, dy, geom).astype(w.dtype)
  return dxf, dw


shift_gemm.defvjp(_shift_gemm_fwd, _shift_gemm_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def shift_wgrad(xf, dy, geom: _Geom):
  return _shift_wgrad_call(xf, dy, geom)


def _shift_wgrad_fwd(xf, dy, geom):
  return shift_wgrad(xf, dy, geom), (xf, dy)


def _shift_wgrad_bwd(geom, res, g):
  xf, dy = res
  g = g.astype(xf.dtype)
  dxf = _input_grad(dy, g, geom, xf.shape[0]).astype(xf.dtype)
  ddy = shift_gemm(xf, g, geom, dy.shape[0]).astype(dy.dtype)
  return dxf, ddy


shift_wgrad.defvjp(_shift_wgrad_fwd, _shift_wgrad_bwd)


# ----------------------------------------------------------------------------- the convolution


# Wider convolutions go to patch_conv: with these tiles the ResNet-18 reference model (64-512
# channels) ran at 249 tasks/s against 324 with patches (H100, 84 px, 2026-11-26), and again
# slower with the tuned tiles (226 vs 155 ms per step): on the 7x7-14x14 maps of the wide stages
# the padded grid's border rows are a third or more of the work.
MAX_CHANNELS = 64
# Inputs with 8-15 channels are zero-padded to 16 (a folded image stem: 12); fewer stay on
# patches, where the padding would multiply the input's bytes.
MIN_IN_CHANNELS = 8


def _tileable(n: int) -> bool:
  return 16 <= n <= MAX_CHANNELS and n & (n - 1) == 0


def _in_channels(c: int) -> int:
  """Channels the kernels see for `c` input channels (0: not covered)."""
  if c < MIN_IN_CHANNELS:
    return 0
  padded = max(16, 1 << (c - 1).bit_length())
  return padded if padded <= MAX_CHANNELS else 0


def _pads(spatial, ksize, padding):
  if isinstance(padding, str):
    return [tuple(p) for p in lax.padtype_to_pads(spatial, ksize, (1, 1), padding)]
  return [tuple(int(v) for v in p) for p in padding]


def covers(lhs_shape, rhs_shape, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
           dimension_numbers=None, feature_group_count=1, batch_group_count=1) -> bool:
  """Whether `pallas_conv` computes this convolution itself (else it calls `patch_conv`)."""
  if len(lhs_shape) != 4 or len(rhs_shape) != 4 or dimension_numbers is None:
    return False
  if lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers) != \
      _channels_last_numbers(4):
    return False
  kh, kw, c_in, c_out = rhs_shape
  if not (feature_group_count == 1 and batch_group_count == 1 and _is_unit(lhs_dilation)
          and _is_unit(rhs_dilation) and all(int(s) == 1 for s in window_strides)
          and c_in == lhs_shape[-1] and _in_channels(c_in) and _tileable(c_out)):
    return False
  pads = _pads(lhs_shape[1:3], (kh, kw), padding)
  return (len(pads) == 2 and min(min(p) for p in pads) >= 0 and
          all(n + lo + hi >= k for n, (lo, hi), k in zip(lhs_shape[1:3], pads, (kh, kw))))


def pallas_conv(lhs, rhs, window_strides: Sequence[int], padding, lhs_dilation=None,
                rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                batch_group_count: int = 1, precision=None, preferred_element_type=None,
                interpret: bool | None = None):
  """`lax.conv_general_dilated` for `[B, H, W, C]` x `[kh, kw, C, O]`, stride 1, any padding.

  Strided convolutions of few-channel inputs (the ResNet stem) come back here as stride-1
  convolutions on folded pixel blocks (`patch_conv._space_to_depth_conv`); other uncovered ones go to
  patch GEMMs."""
  if not covers(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                dimension_numbers, feature_group_count, batch_group_count):
    return patch_conv(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                      dimension_numbers, feature_group_count, batch_group_count, precision,
                      preferred_element_type, folded_conv=functools.partial(
                          pallas_conv, interpret=interpret))
  if interpret is None:
    interpret = jax.default_backend() == 'cpu'
  dtype = jnp.result_type(lhs.dtype, rhs.dtype)
  if preferred_element_type is not None:
    dtype = jnp.dtype(preferred_element_type)
  b, h, w, c = lhs.shape
  kh, kw, _, o = rhs.shape
  (top, bottom), (left, right) = _pads((h, w), (kh, kw), padding)
  hp, wp = h + top + bottom, w + left + right
  cp = _in_channels(c)
  geom = _Geom(wp=wp, kh=kh, kw=kw, mirrored=False, interpret=bool(interpret))
  rows = b * hp * wp
  rows_out = _round_up(rows, _row_multiple())
  x = jnp.pad(lhs.astype(dtype), ((0, 0), (top, bottom), (left, right), (0, cp - c)))
  x = x.reshape(rows, cp)
  # Input rows: a whole number of tiles too, so that its gradient needs no extra padding.
  xf = _pad_rows(x, rows_out + _round_up(geom.max_offset, _row_multiple()))
  kernel = jnp.pad(rhs.astype(dtype), ((0, 0), (0, 0), (0, cp - c), (0, 0)))
  y = shift_gemm(xf, kernel.reshape(kh * kw, cp, o), geom, rows_out)
  # Computed on the padded grid: the outputs are its top-left (hp - kh + 1) x (wp - kw + 1).
  return y[:rows].reshape(b, hp, wp, o)[:, :hp - kh + 1, :wp - kw + 1]


__all__ = ['pallas_conv', 'covers', 'shift_gemm', 'shift_wgrad', 'TUNING']
