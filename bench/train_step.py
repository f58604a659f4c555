r"""Speed of the compiled meta-alignment step for a config: compile time, steps/s, tasks/s,
peak device memory, FLOPs and bytes, achieved TFLOP/s, MFU and roofline fraction. JSON + markdown.

One *task* = one source few-shot task plus its alignment task: the unit of one meta-iteration of
the reference (`../shared/bench/ref_torch_meta_align.py`), so tasks/s compares with its
meta-iters/s. tasks/s = tasks_per_device x devices x steps/s.

  python bench/train_step.py --config configs/default.py                      # one case
  python bench/train_step.py --config configs/bench_conv4.py \
      --sweep task.tasks_per_device=32,128 --sweep execution.task_batching=map,vmap --out r.json
  python bench/train_step.py --suite bench/suite_gpu.json --out r.json         # many configs

Method: batches come from `meta_align_jax.random_batch` (different random data per step, passed
as ARGUMENTS so XLA cannot constant-fold or merge identical tasks); the step is compiled ahead of
time (`lower(...).compile()`, timed as `compile_s`, together with the first call's extra time),
warmed up, then timed as the median over `--repeats` runs of `n` steps each, with
`block_until_ready` on the new state; `n` is chosen so one run lasts about `--run_s` seconds.

FLOPs: XLA's `cost_analysis()` of the compiled step counts the body of every while loop ONCE
(lax.map over tasks, the scanned inner loop and the LSTM's scan over time are loops), so it
undercounts whenever loops are present; it is reported raw (`xla_flops`, `xla_bytes`). The
numbers used for TFLOP/s and MFU (`flops`) come from walking the step's jaxpr and counting the
matmul and convolution FLOPs of every `dot_general` / `conv_general_dilated`, multiplied by the
trip count of each enclosing `scan` (the same convention as the reference's FlopCounterMode:
only matmul and conv FLOPs, forward and backward). `io_bytes` is the operand + result bytes of
those same ops (a lower bound on the memory traffic of an unfused program's heavy ops), and the
roofline floor is max(flops / peak_flops, io_bytes / peak_bw); `roofline_frac` = floor / time.
Peaks: `--peak_tflops` (default: H100 SXM dense bf16 nominal 989; `mfu_measured` uses the 790
TFLOP/s an 8192^3 bf16 matmul reached on this workplace's H100s) and `--peak_gbps` (default 3000
GB/s, the measured device-to-device copy rate of those H100s).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import itertools
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.step_analysis import (_device_info, _peak_memory, _xla_cost, _xla_memory,  # noqa: E402,F401
                                 count_jaxpr, profile_steps)
from meta_align_jax import build_model, init_train_state, make_train_step, random_batch  # noqa: E402
from meta_align_jax import replicate, validation  # noqa: E402

H100_BF16_NOMINAL_TFLOPS = 989.0
H100_BF16_MEASURED_TFLOPS = 790.0
H100_MEASURED_GBPS = 3000.0


# --------------------------------------------------------------------------- config


def _parse_value(value: str):
  try:
    return ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return value


def load_config(path: str, overrides: dict | None = None):
  path = path if os.path.isabs(path) else os.path.join(REPO, path)
  spec = importlib.util.spec_from_file_location('bench_config_' + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for key, value in (overrides or {}).items():
    *groups, name = key.split('.')
    node = config
    for g in groups:
      node = node[g]
    if isinstance(value, str):
      value = _parse_value(value)
    if isinstance(value, list):
      value = tuple(value)
    node[name] = value
  return config


# --------------------------------------------------------------------------- one case


def describe(config, execution) -> dict:
  return {'task_batching': execution.task_batching, 'inner_loop': execution.inner_loop,
          'map_batch_size': execution.map_batch_size, 'conv': dict(execution.conv),
          'dtype': config.model.compute_dtype, 'tasks_per_device': config.task.tasks_per_device,
          'inner_steps': config.meta.inner_steps, 'learner': config.meta.learner,
          'adapt': config.meta.adapt, 'source': f'{config.source.encoder}{tuple(config.source.input_shape)}',
          'target': f'{config.target.encoder}{tuple(config.target.input_shape)}'}


def run_case(config_path: str, overrides: dict, *, name: str = '', repeats: int = 5,
             run_s: float = 1.0, warmup: int = 2, num_batches: int = 3, peak_tflops: float,
             peak_gbps: float, profile_dir: str | None = None, count_flops: bool = True) -> dict:
  """Compiles and times one config; returns the result row (see the module docstring)."""
  t_start = time.perf_counter()
  config = load_config(config_path, overrides)
  model = build_model(config)
  res = {'name': name or os.path.basename(config_path)[:-3], 'config': config_path,
         'overrides': overrides, **describe(config, model.execution)}
  state = init_train_state(config, model, jax.random.key(config.seed))
  pmapped = model.execution.pmapped
  if pmapped:
    state = replicate(state)
  step = make_train_step(config, model)
  jitted = step.__wrapped__
  host_batches = [random_batch(config, seed=i) for i in range(num_batches)]
  validation.check_batch(config, host_batches[0])
  batches = [jax.device_put(b) for b in host_batches]
  rngs = [jax.random.key(100 + i) for i in range(num_batches)]
  jax.block_until_ready((batches, state))
  devices = jax.local_device_count() if pmapped else 1
  tasks_per_step = config.task.tasks_per_device * devices

  t0 = time.perf_counter()
  lowered = jitted.lower(state, batches[0], rngs[0])
  res['lower_s'] = time.perf_counter() - t0
  t1 = time.perf_counter()
  compiled = lowered.compile()
  res['xla_compile_s'] = time.perf_counter() - t1
  res.update(_xla_cost(compiled))
  res['step_mem_gib'] = _xla_memory(compiled)
  t2 = time.perf_counter()
  state, metrics = compiled(state, batches[0], rngs[0])
  jax.block_until_ready(state)
  res['first_step_s'] = time.perf_counter() - t2
  res['compile_s'] = res['lower_s'] + res['xla_compile_s']
  if count_flops:
    # Under pmap the jaxpr holds one device's program: its counts are per device.
    cnt = count_jaxpr(jax.make_jaxpr(jitted)(state, batches[0], rngs[0]).jaxpr)
    res['flops'] = cnt['flops'] * devices
    res['io_bytes'] = cnt['io_bytes'] * devices
    res['flops_by_op'] = {k: v * devices for k, v in cnt['by_op'].items()}
    res['while_loops_counted_once'] = cnt['while_loops']
  for i in range(warmup):
    state, metrics = compiled(state, batches[i % num_batches], rngs[i % num_batches])
  jax.block_until_ready(state)

  # Steps per timed run: about run_s seconds, at least 1.
  t3 = time.perf_counter()
  state, metrics = compiled(state, batches[1 % num_batches], rngs[1 % num_batches])
  jax.block_until_ready(state)
  est = time.perf_counter() - t3
  n = max(1, min(200, int(run_s / max(est, 1e-6))))
  times = []
  for r in range(repeats):
    t = time.perf_counter()
    for j in range(n):
      k = (r * n + j) % num_batches
      state, metrics = compiled(state, batches[k], rngs[k])
    jax.block_until_ready(state)
    times.append((time.perf_counter() - t) / n)
  step_s = statistics.median(times)
  res.update({'steps_per_run': n, 'repeats': repeats, 'step_ms': 1e3 * step_s,
              'step_ms_min': 1e3 * min(times), 'step_ms_max': 1e3 * max(times),
              'steps_per_s': 1.0 / step_s, 'tasks_per_step': tasks_per_step,
              'tasks_per_s': tasks_per_step / step_s,
              # process-wide high-water mark (cumulative over the cases of one process):
              'process_peak_mem_gib': _peak_memory(),
              'loss': float(np.mean(metrics['loss'])),
              'finite': bool(np.all(np.isfinite(np.asarray(metrics['loss']))))})
  if res.get('flops'):
    res['flops_per_task'] = res['flops'] / tasks_per_step
    res['tflops_per_s'] = res['flops'] / step_s / 1e12
    res['mfu'] = res['tflops_per_s'] / (peak_tflops * devices)
    res['mfu_measured_peak'] = res['tflops_per_s'] / (H100_BF16_MEASURED_TFLOPS * devices)
    floor = max(res['flops'] / (peak_tflops * 1e12 * devices),
                res['io_bytes'] / (peak_gbps * 1e9 * devices))
    res['roofline_floor_ms'] = 1e3 * floor
    res['roofline_bound'] = ('flops' if res['flops'] / peak_tflops / 1e3
                             >= res['io_bytes'] / peak_gbps else 'bytes')
    res['roofline_frac'] = floor / step_s
  if profile_dir:
    res['profile'] = profile_steps(compiled, state, batches, rngs, profile_dir, res['name'])
  res['case_wall_s'] = time.perf_counter() - t_start
  return res


# --------------------------------------------------------------------------- output


def markdown(rows) -> str:
  head = ('| case | batching | inner | dtype | T | compile s | ms/step | tasks/s | '
          'GFLOP/task | TFLOP/s | MFU | roofline | mem GiB |')
  lines = [head, '|' + '---|' * (head.count('|') - 1)]
  f = lambda v, fmt: (fmt.format(v) if isinstance(v, (int, float)) and v is not None else '-')
  for r in rows:
    if 'error' in r and 'step_ms' not in r:
      lines.append(f"| {r.get('name')} | {r.get('task_batching', '')} | {r.get('inner_loop', '')} | "
                   f"{r.get('dtype', '')} | {r.get('tasks_per_device', '')} | error: "
                   f"{r['error'][:80]} |||||||")
      continue
    batching = r['task_batching'] + (f"/{r['map_batch_size']}" if r['task_batching'] == 'map'
                                     and r['map_batch_size'] else '')
    lines.append(
        f"| {r['name']} | {batching} | {r['inner_loop']} | {r['dtype']} | {r['tasks_per_device']} | "
        f"{f(r['compile_s'], '{:.1f}')} | {f(r['step_ms'], '{:.1f}')} | {f(r['tasks_per_s'], '{:.1f}')} | "
        f"{f((r.get('flops_per_task') or 0) / 1e9, '{:.1f}')} | {f(r.get('tflops_per_s'), '{:.2f}')} | "
        f"{f(100 * r['mfu'] if r.get('mfu') is not None else None, '{:.1f}%')} | "
        f"{f(100 * r['roofline_frac'] if r.get('roofline_frac') is not None else None, '{:.1f}%')} | "
        f"{f(r.get('step_mem_gib'), '{:.2f}')} |")
  return '\n'.join(lines)


def _cases_from_args(args):
  if args.suite:
    with open(args.suite) as fh:
      suite = json.load(fh)
    for case in suite:
      yield case.get('name', ''), case['config'], dict(case.get('overrides', {})), case.get('profile', False)
    return
  base = dict(kv.split('=', 1) for kv in args.override)
  keys, values = [], []
  for s in args.sweep:
    k, v = s.split('=', 1)
    keys.append(k)
    values.append(v.split(','))
  for combo in itertools.product(*values) if keys else [()]:
    ov = {**base, **dict(zip(keys, combo))}
    tag = ','.join(f'{k.split(".")[-1]}={v}' for k, v in zip(keys, combo))
    yield (args.name + (':' if args.name and tag else '') + tag) or '', args.config, ov, bool(args.profile)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='configs/default.py')
  p.add_argument('--override', action='append', default=[], help='field=value, repeatable')
  p.add_argument('--sweep', action='append', default=[],
                 help='field=v1,v2,...; repeatable, the cartesian product is run')
  p.add_argument('--suite', help='JSON list of {name, config, overrides, profile}')
  p.add_argument('--name', default='')
  p.add_argument('--pallas_tuning', default='',
                 help="JSON file from bench/tune_pallas.py: its 'best' tiles for execution.conv=pallas")
  p.add_argument('--out', help='JSON file (rewritten after every case)')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--run_s', type=float, default=1.0, help='target seconds per timed run')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--peak_tflops', type=float, default=H100_BF16_NOMINAL_TFLOPS)
  p.add_argument('--peak_gbps', type=float, default=H100_MEASURED_GBPS)
  p.add_argument('--profile', default='', help='trace directory (every case of a sweep; suite: per case)')
  p.add_argument('--profile_dir', default='/tmp/bench_profile')
  p.add_argument('--budget_s', type=float, default=0.0,
                 help='start no new case after this many seconds (0 = no limit)')
  args = p.parse_args(argv)

  t0 = time.perf_counter()
  info = _device_info()
  info['pallas_tuning'] = None
  if args.pallas_tuning:
    from meta_align_jax.fast import pallas_conv
    with open(args.pallas_tuning) as fh:
      pallas_conv.TUNING.update(json.load(fh)['best'])
    info['pallas_tuning'] = dict(pallas_conv.TUNING)
  rows = []
  print(json.dumps(info), flush=True)
  for name, cfg, ov, prof in _cases_from_args(args):
    if args.budget_s and time.perf_counter() - t0 > args.budget_s:
      rows.append({'name': name, 'config': cfg, 'overrides': ov, 'error': 'skipped: time budget'})
      continue
    try:
      row = run_case(cfg, ov, name=name, repeats=args.repeats, run_s=args.run_s,
                     warmup=args.warmup, peak_tflops=args.peak_tflops, peak_gbps=args.peak_gbps,
                     profile_dir=(args.profile or args.profile_dir) if prof else None)
    except Exception as e:  # noqa: BLE001  (a failing case must not lose the others)
      row = {'name': name, 'config': cfg, 'overrides': ov, 'error': f'{type(e).__name__}: {e}'[:2000]}
    rows.append(row)
    print(json.dumps({k: v for k, v in row.items() if k not in ('profile', 'flops_by_op')}),
          flush=True)
    if args.out:
      with open(args.out, 'w') as fh:
        json.dump({'device': info, 'date': time.strftime('%Y-%m-%d'),
                   'peak_tflops': args.peak_tflops, 'peak_gbps': args.peak_gbps,
                   'argv': sys.argv, 'results': rows}, fh, indent=1)
  print(markdown(rows), flush=True)
  return rows


if __name__ == '__main__':
  main()
