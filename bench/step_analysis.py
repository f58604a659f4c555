"""What bench/train_step.py measures besides time: matmul/conv FLOPs and bytes from the jaxpr,
XLA's own cost and memory analyses, the device, and a kernel profile of a few steps."""

from __future__ import annotations

import math
import os
import platform
import time

import jax
import numpy as np


# --------------------------------------------------------------------------- FLOP counting


def _size(aval) -> int:
  return int(np.prod(aval.shape)) if hasattr(aval, 'shape') else 0


def _nbytes(aval) -> int:
  return _size(aval) * np.dtype(aval.dtype).itemsize if hasattr(aval, 'dtype') else 0


def _sub_jaxprs(params):
  for v in params.values():
    items = v if isinstance(v, (tuple, list)) else (v,)
    for item in items:
      if hasattr(item, 'eqns'):
        yield item
      elif hasattr(item, 'jaxpr') and hasattr(item.jaxpr, 'eqns'):
        yield item.jaxpr


def _pallas_name(eqn) -> str:
  info = eqn.params.get('name_and_src_info') or eqn.params.get('name') or ''
  return str(getattr(info, 'name', info)).split(' ')[0]


def count_jaxpr(jaxpr, mult: float = 1.0, acc=None):
  """{'flops', 'io_bytes', 'by_op', 'while_loops'} of matmuls and convs, scans multiplied out."""
  acc = acc or {'flops': 0.0, 'io_bytes': 0.0, 'by_op': {}, 'while_loops': 0}
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      (lc, rc), (lb, _) = eqn.params['dimension_numbers']
      lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
      contract = np.prod([lhs.shape[d] for d in lc]) if lc else 1
      flops = 2.0 * _size(eqn.outvars[0].aval) * contract
    elif name == 'conv_general_dilated':
      rhs = eqn.invars[1].aval
      out_features_dim = eqn.params['dimension_numbers'].rhs_spec[0]
      per_out = _size(rhs) / rhs.shape[out_features_dim]
      flops = 2.0 * _size(eqn.outvars[0].aval) * per_out
    elif name == 'pallas_call' and _pallas_name(eqn) in ('shift_gemm', 'shift_wgrad'):
      # The implicit-GEMM convolution's kernels (fast/pallas_conv.py): taps x C x O
      # multiply-adds per row of the padded grid (its border rows are computed and dropped, so
      # this counts executed FLOPs, 2-40 % above the valid outputs' for Conv-4's maps).
      out = eqn.outvars[0].aval
      if _pallas_name(eqn) == 'shift_gemm':
        taps, c = eqn.invars[1].aval.shape[-3:-1]
        flops = 2.0 * _size(out) * taps * c
      else:
        taps, c = out.shape[-3:-1]
        flops = 2.0 * _size(eqn.invars[1].aval) * taps * c
      name = _pallas_name(eqn)
    else:
      flops = None
    if flops is not None:
      io = sum(_nbytes(v.aval) for v in eqn.invars) + sum(_nbytes(v.aval) for v in eqn.outvars)
      acc['flops'] += mult * flops
      acc['io_bytes'] += mult * io
      acc['by_op'][name] = acc['by_op'].get(name, 0.0) + mult * flops
      continue
    inner = mult
    if name == 'scan':
      inner = mult * eqn.params['length']
    elif name == 'while':
      acc['while_loops'] += 1   # unknown trip count: counted once
    if name == 'cond':
      branches = [count_jaxpr(b.jaxpr, inner) for b in eqn.params['branches']]
      best = max(branches, key=lambda b: b['flops'])
      for k in ('flops', 'io_bytes'):
        acc[k] += best[k]
      continue
    for sub in _sub_jaxprs(eqn.params):
      count_jaxpr(sub, inner, acc)
  return acc



def _device_info():
  d = jax.devices()[0]
  return {'backend': jax.default_backend(), 'device_kind': d.device_kind,
          'num_devices': jax.local_device_count(), 'jax': jax.__version__,
          'platform': platform.platform(), 'cpus': os.cpu_count()}


def _peak_memory():
  out = []
  for d in jax.local_devices():
    try:
      stats = d.memory_stats() or {}
    except Exception:  # noqa: BLE001  (XLA:CPU has no memory stats)
      stats = {}
    if 'peak_bytes_in_use' in stats:
      out.append(stats['peak_bytes_in_use'])
  return max(out) / 2**30 if out else None


def _xla_memory(compiled):
  """Device memory the compiled step needs: arguments + outputs + temporaries - aliased."""
  try:
    m = compiled.memory_analysis()
    m = m[0] if isinstance(m, (list, tuple)) else m
    total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)
    return total / 2**30
  except Exception:  # noqa: BLE001
    return None


def _xla_cost(compiled):
  try:
    ca = compiled.cost_analysis()
  except Exception as e:  # noqa: BLE001
    return {'error': repr(e)}
  if isinstance(ca, (list, tuple)):
    ca = ca[0] if ca else {}
  return {'xla_flops': float(ca.get('flops', 0.0)), 'xla_bytes': float(ca.get('bytes accessed', 0.0))}


# --------------------------------------------------------------------------- profile


def profile_steps(compiled, state, batches, rngs, profile_dir, name, steps=3, top=25):
  """Traces `steps` steps with jax.profiler and sums device time per kernel (top `top`)."""
  path = os.path.join(profile_dir, name)
  os.makedirs(path, exist_ok=True)
  t = time.perf_counter()
  with jax.profiler.trace(path):
    for i in range(steps):
      state, _ = compiled(state, batches[i % len(batches)], rngs[i % len(rngs)])
    jax.block_until_ready(state)
  wall = (time.perf_counter() - t) / steps
  out = {'trace_dir': path, 'traced_steps': steps, 'wall_ms_per_step_traced': 1e3 * wall}
  try:
    from jax.profiler import ProfileData
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(path) for f in fs if f.endswith('.xplane.pb')]
    data = ProfileData.from_file(sorted(files)[-1])
    kernels, per_plane, line_names = {}, {}, {}
    for plane in data.planes:
      if not plane.name.startswith('/device:GPU'):
        continue
      lines = list(plane.lines)
      for line in lines:
        evs = list(line.events)
        line_names[f'{plane.name}|{line.name}'] = [len(evs), sum(e.duration_ns for e in evs) / 1e6]
      streams = [l for l in lines if 'stream' in l.name.lower() and 'memcpy' not in l.name.lower()]
      busy, count, lo, hi = 0.0, 0, math.inf, 0.0
      for line in streams or lines:
        for ev in line.events:
          kernels.setdefault(ev.name, [0.0, 0])
          kernels[ev.name][0] += ev.duration_ns
          kernels[ev.name][1] += 1
          busy += ev.duration_ns
          count += 1
          lo, hi = min(lo, ev.start_ns), max(hi, ev.start_ns + ev.duration_ns)
      per_plane[plane.name] = {'kernel_ms_per_step': busy / 1e6 / steps,
                               'kernels_per_step': count / steps,
                               'span_ms_per_step': (hi - lo) / 1e6 / steps if count else 0.0,
                               'mean_kernel_us': busy / 1e3 / max(count, 1)}
    total = sum(v[0] for v in kernels.values()) or 1.0
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]
    out['gpu'] = per_plane
    out['lines'] = line_names
    out['top_kernels'] = [{'name': k[:120], 'ms_per_step': v[0] / 1e6 / steps,
                           'calls_per_step': v[1] / steps, 'frac': v[0] / total}
                          for k, v in ranked]
    cats = {}
    for k, v in kernels.items():
      lk = k.lower()
      cat = ('pallas conv' if ('shift_gemm' in lk or 'shift_wgrad' in lk) else
             'conv' if (('conv' in lk and 'convert' not in lk) or 'cudnn' in lk or 'xmma' in lk
                        or 'implicit' in lk) else
             'gemm' if ('gemm' in lk or 'cutlass' in lk or 'cublas' in lk or 'sm90' in lk) else
             'copy/memset' if ('memcpy' in lk or 'memset' in lk or 'copy' in lk) else
             'reduce' if 'reduce' in lk else 'fusion/other')
      cats[cat] = cats.get(cat, 0.0) + v[0] / 1e6 / steps
    out['ms_per_step_by_category'] = cats
  except Exception as e:  # noqa: BLE001
    out['error'] = repr(e)
  return out
