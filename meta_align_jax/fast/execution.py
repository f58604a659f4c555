"""How the step executes: one `Execution`, resolved once from `config.execution`.

Every choice that changes speed and never the numbers lives here: how the step is spread over
devices (`parallel`), how the tasks of a device are batched (`task_batching`), whether the inner
loop is scanned or unrolled and how (`inner_loop`, `inner_unroll`, `inner_peel`), which
convolution the encoders run (`conv`, per side), the LSTM's time unroll (`rnn_unroll`) and which
encoders run as a `lax.map` over vmapped tasks (`map_encoders`). `resolve(config)` replaces
`auto` by the backend's measured best (docs/SPEED.md): on XLA:CPU unrolled code and XLA's own
convolutions; on GPUs vmapped tasks, a scanned inner loop and per-task convolutions as Pallas
implicit GEMMs. `build_model` resolves it and keeps it on the model; the train and evaluation
steps take it from there, so nothing else reads `config.execution`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax

from meta_align_jax import parallel

TASK_BATCHINGS = ('auto', 'vmap', 'map', 'unroll')
INNER_LOOPS = ('auto', 'scan', 'unroll')
CONV_IMPLS = ('auto', 'xla', 'patches', 'pallas')
GPU_BACKENDS = ('gpu', 'cuda', 'rocm')
DEFAULT_CONV = 'auto'   # configs/default.py's value; the one default for configs without the field
SIDES = ('source', 'target')


def _positive(value, field):
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{field}={value!r}: must be an integer >= 1.')


def check(config) -> None:
  """Validates `config.execution`'s fields (no resolution); raises naming the field."""
  e = config.execution
  if e.parallel not in parallel.MODES:
    raise ValueError(f"config.execution.parallel={e.parallel!r}: use 'auto', 'pmap' or 'jit'.")
  if e.task_batching not in TASK_BATCHINGS:
    raise ValueError(f'config.execution.task_batching={e.task_batching!r}: use auto, vmap, map '
                     'or unroll.')
  if e.inner_loop not in INNER_LOOPS:
    raise ValueError(f'config.execution.inner_loop={e.inner_loop!r}: use auto, scan or unroll.')
  _check_conv(e.get('conv', DEFAULT_CONV))
  _positive(e.get('rnn_unroll', 1), 'config.execution.rnn_unroll')
  _positive(e.get('inner_unroll', 1), 'config.execution.inner_unroll')
  if not isinstance(e.get('inner_peel', True), bool):
    raise ValueError(f'config.execution.inner_peel={e.inner_peel!r}: use True or False.')
  bad = [s for s in tuple(e.get('map_encoders', ())) if s not in SIDES]
  if bad:
    raise ValueError(f'config.execution.map_encoders={tuple(e.map_encoders)!r}: use sides from '
                     f'{SIDES}.')


def _check_conv(impl: str) -> None:
  if impl not in CONV_IMPLS:
    raise ValueError(f'config.execution.conv={impl!r}: use one of {CONV_IMPLS}.')


def resolve_conv(impl: str, task_batching: str, side: str, map_encoders: Sequence[str],
                 backend: str | None = None) -> str:
  """`config.execution.conv` for one side. `auto`: where per-task weights are vmapped on an
  accelerator (grouped convolutions otherwise), the Pallas implicit GEMM on GPUs
  (fast/pallas_conv.py; the convolutions it does not cover go to patches) and patches on other
  accelerators; XLA's convolution elsewhere."""
  _check_conv(impl)
  return _resolve_conv(impl, task_batching, side, map_encoders, backend)


def _resolve_conv(impl, task_batching, side, map_encoders, backend=None) -> str:
  """`resolve_conv` of an `impl` already checked (`check`)."""
  backend = backend or jax.default_backend()
  if impl == 'pallas' and backend == 'cpu':
    raise ValueError(
        "config.execution.conv='pallas' on CPU would run the Pallas kernels in Pallas's "
        "interpreter (meant for tests, orders of magnitude slower). Use 'auto' (XLA's "
        "convolutions on CPU, the Pallas kernels on GPU) or 'xla'.")
  if impl == 'pallas' and backend not in GPU_BACKENDS:
    raise ValueError(
        f"config.execution.conv='pallas' needs a GPU (its kernels are Triton kernels); this "
        f"backend is {backend!r}. Use 'auto' (patch GEMMs on other accelerators) or 'patches'.")
  if impl != 'auto':
    return impl
  vmapped = task_batching == 'vmap' and side not in tuple(map_encoders)
  if backend == 'cpu' or not vmapped:
    return 'xla'
  return 'pallas' if backend in GPU_BACKENDS else 'patches'


def conv_fn(impl: str):
  """The `conv_general_dilated` argument of `flax.linen.Conv` for a resolved impl."""
  if impl == 'xla':
    return None
  if impl == 'patches':
    from meta_align_jax.fast.patch_conv import patch_conv
    return patch_conv
  if impl == 'pallas':
    from meta_align_jax.fast.pallas_conv import pallas_conv
    return pallas_conv
  raise ValueError(f"conv impl {impl!r}: resolve 'auto' first (resolve_conv); use {CONV_IMPLS}.")


@dataclasses.dataclass(frozen=True)
class Execution:
  """The resolved execution choices (no `auto` left); see the module docstring."""
  parallel: str = 'jit'                  # 'pmap' | 'jit'
  task_batching: str = 'vmap'            # 'vmap' | 'map' | 'unroll'
  inner_loop: str = 'scan'               # 'scan' | 'unroll'
  map_batch_size: int = 0
  conv: tuple[tuple[str, str], ...] = (('source', 'xla'), ('target', 'xla'))
  rnn_unroll: int = 1
  inner_unroll: int = 1
  inner_peel: bool = True
  map_encoders: tuple[str, ...] = ()
  num_devices: int | None = None         # the batch's leading device axis (pmap), else None
  backend: str = 'cpu'
  fields: tuple = ()                     # config.execution's items it was resolved from

  @property
  def pmapped(self) -> bool:
    return self.parallel == 'pmap'

  @property
  def unrolled(self) -> bool:
    return self.inner_loop == 'unroll'

  @property
  def fast_inner(self) -> bool:
    """The fast inner loop (fast/inner.py: peeled first step, carried bfloat16 copies) off CPU,
    and on CPU where a scanned loop asks for the peel; the plain `meta/inner.py` loop else."""
    return self.backend != 'cpu' or (not self.unrolled and self.inner_peel)

  def conv_impl(self, side: str) -> str:
    return dict(self.conv)[side]

  def conv_module(self, side: str) -> Any:
    """The convolution module (a `flax.linen.Conv` factory) of `side`'s encoder."""
    fn = conv_fn(self.conv_impl(side))
    return nn.Conv if fn is None else functools.partial(nn.Conv, conv_general_dilated=fn)

  def matches(self, config) -> bool:
    """Whether this was resolved from `config.execution` (the same fields) on this backend."""
    return self.fields == _fields(config) and self.backend == jax.default_backend()


def _fields(config) -> tuple:
  return tuple(sorted((k, repr(v)) for k, v in config.execution.items()))


def resolve(config, backend: str | None = None) -> Execution:
  """The `Execution` of `config.execution` with `auto` replaced by the backend's best."""
  check(config)
  e = config.execution
  backend = backend or jax.default_backend()
  tb, il = e.task_batching, e.inner_loop
  if tb == 'auto':
    tb = 'unroll' if backend == 'cpu' else 'vmap'
  if il == 'auto':
    il = 'unroll' if backend == 'cpu' else 'scan'
  mode = parallel.resolve_parallel(config)
  map_encoders = tuple(e.get('map_encoders', ()))
  conv = tuple((side, _resolve_conv(e.get('conv', DEFAULT_CONV), tb, side, map_encoders, backend))
               for side in SIDES)
  return Execution(
      parallel=mode, task_batching=tb, inner_loop=il, map_batch_size=int(e.map_batch_size),
      conv=conv, rnn_unroll=int(e.get('rnn_unroll', 1)), inner_unroll=int(e.get('inner_unroll', 1)),
      inner_peel=bool(e.get('inner_peel', True)), map_encoders=map_encoders,
      num_devices=jax.local_device_count() if mode == 'pmap' else None, backend=backend,
      fields=_fields(config))


def of(config, model=None) -> Execution:
  """The model's `Execution` when it was resolved from this config, else a fresh resolution."""
  ex = getattr(model, 'execution', None)
  if ex is not None and ex.matches(config):
    return ex
  return resolve(config)
