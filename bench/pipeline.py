r"""Throughput of the training input pipeline (episodes/s, batches/s) for a config, as JSON.

Measures `meta_align_jax.data.make_train_iterator` alone (no training step): how fast the tf.data
pipeline draws, gathers and hands over batches as numpy. An "episode" is one task of the batch
(its source few-shot task, its alignment pairs and, when configured, its target task), so
episodes/s = batches/s x devices x tasks_per_device, comparable to the step's episodes/s.

  python bench/pipeline.py                                  # configs/default.py, its datasets
  python bench/pipeline.py --config configs/default.py --out /tmp/pipeline.json \
      --override task.tasks_per_device=32 --batches 500
  python bench/pipeline.py --data fake                      # random in-memory data, no TFDS
  python bench/pipeline.py --gather index                   # what the host makes when the
                                                            # device gathers (data.gather=device)

`--data config` (default) loads the datasets `config.data` names (preparing them on first use,
which is timed separately as `load_s`); `--data fake` injects random data of the config's shapes
(`--fake_classes` x `--fake_per_class`), to measure the pipeline without any dataset.

`--gather host` (default) times batches of examples gathered by tf.data; `--gather index` times
the index batches the host produces when the accelerator gathers (`config.data.gather='device'`,
`meta_align_jax/feeds/device_gather.py`), the host's whole share of the work then;
`--gather device` adds the gather on this machine's JAX device (on a CPU-only machine, the CPU).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402  pylint: disable=g-import-not-at-top

from meta_align_jax import data  # noqa: E402  pylint: disable=g-import-not-at-top
from meta_align_jax.data import episodes  # noqa: E402  pylint: disable=g-import-not-at-top
from meta_align_jax import parallel  # noqa: E402  pylint: disable=g-import-not-at-top
from meta_align_jax.feeds import pipeline  # noqa: E402  pylint: disable=g-import-not-at-top


def load_config(path: str, overrides: list[str]):
  spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for item in overrides:
    key, _, value = item.partition('=')
    *groups, name = key.split('.')
    node = config
    for g in groups:
      node = node[g]
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass                      # a bare string
    node[name] = value
  return config


def fake_sources(config, num_classes: int, per_class: int, seed: int = 0) -> data.Sources:
  rng = np.random.default_rng(seed)
  n = num_classes * per_class
  label = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
  names = [f'class_{i}' for i in range(num_classes)]

  def modality(side):
    shape = (n,) + tuple(config[side].input_shape)
    if config[side].modality == 'text':
      x = rng.integers(0, config.model.vocab_size, size=shape, dtype=np.int32)
    else:
      x = rng.random(shape, dtype=np.float32)
    return data.ModalityData(x=x, label=label, class_names=names, example_id=np.arange(n))

  return data.Sources(source=modality('source'), target=modality('target'))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default=os.path.join(os.path.dirname(__file__), '..', 'configs',
                                                       'default.py'))
  parser.add_argument('--override', action='append', default=[],
                      help='config field=value (Python literal), e.g. task.tasks_per_device=32')
  parser.add_argument('--data', choices=('config', 'fake'), default='config')
  parser.add_argument('--fake_classes', type=int, default=100)
  parser.add_argument('--fake_per_class', type=int, default=20)
  parser.add_argument('--batches', type=int, default=300, help='timed batches')
  parser.add_argument('--warmup', type=int, default=20, help='untimed batches first')
  parser.add_argument('--eval_episodes', type=int, default=-1,
                      help='also time make_eval_episodes for this many (-1: config.eval.num_episodes, '
                           '0: skip)')
  parser.add_argument('--gather', choices=('host', 'index', 'device'), default='host',
                      help='host: tf.data gathers examples; index: index batches only; device: '
                           'index batches gathered on the JAX device')
  parser.add_argument('--out', default='', help='also write the JSON here')
  args = parser.parse_args(argv)

  config = load_config(args.config, args.override)
  t0 = time.perf_counter()
  if args.data == 'fake':
    sources = fake_sources(config, args.fake_classes, args.fake_per_class)
  else:
    sources = data.load_sources(config)
  load_s = time.perf_counter() - t0

  t0 = time.perf_counter()
  if args.gather == 'index':
    it = episodes.train_dataset(config, sources=sources, index_only=True,
                                devices=parallel.num_batch_devices(config)).as_numpy_iterator()
  else:
    config.data.gather = args.gather
    it = pipeline.Pipeline(sources).make_train_iterator(config)
  first = next(it)
  first_batch_s = time.perf_counter() - t0
  for _ in range(args.warmup):
    next(it)
  t0 = time.perf_counter()
  last = None
  for _ in range(args.batches):
    last = next(it)
  jax.block_until_ready(last)
  elapsed = time.perf_counter() - t0

  devices = parallel.num_batch_devices(config)
  tasks_per_batch = (devices or 1) * config.task.tasks_per_device
  # Bytes the host hands over per batch (device-gathered batches: those of the index batch).
  host_batch = (first if args.gather != 'device' else
                episodes.train_dataset(config, sources=sources, index_only=True, devices=devices)
                .as_numpy_iterator().next())
  batch_bytes = int(sum(v.nbytes for v in _leaves(host_batch)))
  result = {
      'benchmark': 'pipeline',
      'config': os.path.relpath(os.path.abspath(args.config)),
      'overrides': args.override,
      'data': (args.data if args.data == 'fake' else
               f'{config.data.source_dataset}/{config.data.source_feature} -> '
               f'{config.data.target_dataset}/{config.data.target_feature}'),
      'num_source_examples': sources.source.num_examples,
      'num_target_examples': sources.target.num_examples,
      'batch_shape': {'devices': devices, 'tasks_per_device': config.task.tasks_per_device,
                      'ways': config.task.ways, 'shots': config.task.shots,
                      'queries': config.task.queries, 'align_pairs': config.align.pairs,
                      'meta_on': list(config.task.meta_on)},
      'gather': args.gather,
      'batch_bytes': batch_bytes,
      'prefetch': config.data.prefetch,
      'timed_batches': args.batches,
      'batches_per_s': args.batches / elapsed,
      'episodes_per_s': args.batches * tasks_per_batch / elapsed,
      'mb_per_s': args.batches * batch_bytes / elapsed / 1e6,
      'load_s': load_s,
      'first_batch_s': first_batch_s,
      'cpu_count': os.cpu_count(),
      'platform': platform.platform(),
      'python': platform.python_version(),
      'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
  }
  num_eval = config.eval.num_episodes if args.eval_episodes < 0 else args.eval_episodes
  if num_eval:
    t0 = time.perf_counter()
    data.make_eval_episodes(config, config.eval.split, num_episodes=num_eval, sources=sources)
    result['eval_episodes'] = num_eval
    result['eval_episodes_s'] = time.perf_counter() - t0
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      f.write(text + '\n')
  return result


def _leaves(tree):
  if isinstance(tree, dict):
    for v in tree.values():
      yield from _leaves(v)
  else:
    yield tree


if __name__ == '__main__':
  main()
