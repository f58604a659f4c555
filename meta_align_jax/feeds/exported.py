"""Training and evaluation from an exported data bundle: runs on machines without TensorFlow.

`launch/export_data.py` (on a machine with TensorFlow and the datasets) runs the data pipeline
of a config and writes one `.npz` bundle: the raw source and target examples (images as stored,
e.g. uint8 32x32, so a bundle stays small), the index batches of the first `--steps` training
steps, the fixed meta-val and meta-test episodes, the retrieval pairs, the class split and the
target training subset. `ExportedData(path)` serves them through the data API that `train.train`,
`train.train_and_evaluate` and `evaluate.evaluate` take (`data=`), importing only numpy and JAX:

  python launch/export_data.py --config configs/gpu_image_audio.py --steps 3000 --out b.npz
  python launch/run.py --config configs/gpu_image_audio.py --exported b.npz --workdir runs/x

The batches are the pipeline's own: the same tasks, labels and noise, gathered on the device
(`meta_align_jax.feeds.device_gather`). Inputs are converted to `config.<side>.input_shape` here, with
`jax.image.resize` (bilinear, antialiased) where the TensorFlow pipeline uses `tf.image.resize`;
the two agree to float32 rounding (`tests/test_exported.py`).

A bundle fixes everything the data depend on (seed, datasets, split, shots, noise, task and
alignment shapes, evaluation episodes, tasks per step). A config that differs in any of these
fields, or trains longer than the bundle's steps, is refused before anything compiles, naming the
fields. The bundle's format (version, fields, digest of the examples) is `meta_align_jax.io`'s,
shared with the writer, `meta_align_jax.data.export`.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import jax
import numpy as np

from meta_align_jax import io, parallel
from meta_align_jax.feeds import device_gather


def tasks_per_step(config) -> int:
  return (parallel.num_batch_devices(config) or 1) * int(config.task.tasks_per_device)


def to_input(raw: np.ndarray, *, modality: str, input_shape, chunk: int = 512) -> np.ndarray:
  """`raw` examples `[n, ...]` as the pipeline's inputs `[n, *input_shape]` (numpy/JAX only).

  Images: integers scaled by 1/255, resized to (H, W) with `jax.image.resize` (bilinear,
  antialiased, as `tf.image.resize(..., antialias=True)`), clipped to [0, 1], channels tiled or
  averaged. Text: int32 token ids. Everything else: float32 as stored.
  """
  input_shape = tuple(int(d) for d in input_shape)
  if modality == 'text':
    return np.asarray(raw, np.int32)
  if modality != 'image':
    return np.asarray(raw, np.float32)
  x = raw[..., None] if raw.ndim == 3 else raw
  h, w, _ = input_shape
  resize = jax.jit(lambda v: jax.image.resize(v, (v.shape[0], h, w, v.shape[-1]), 'linear',
                                              antialias=True))
  return io.images_to_input(x, input_shape, lambda part: np.asarray(resize(part)), chunk)


def _write_json_once(workdir: str, name: str, content: dict, what: str) -> None:
  """Writes `content` to workdir/name, or checks that the file there holds the same."""
  path = os.path.join(workdir, name)
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) != content:
        raise ValueError(f'{path} holds another {what} than the bundle. Use a fresh --workdir for a '
                         f'different experiment.')
    return
  os.makedirs(workdir, exist_ok=True)
  io.write_atomic(path, json.dumps(content, indent=1))


class ExportedData:
  """The data API (`make_splits`, `make_train_iterator`, `make_eval_episodes`,
  `make_retrieval_set`) over a bundle written by `launch/export_data.py`."""

  def __init__(self, path: str):
    if not os.path.exists(path):
      raise FileNotFoundError(f'Exported data bundle {path} does not exist. Write it on a machine '
                              f'with TensorFlow: python launch/export_data.py --config CONFIG '
                              f'--steps N --out {path}')
    self.path = path
    with np.load(path, allow_pickle=False) as f:
      self._arrays = {k: f[k] for k in f.files}
    self.meta = json.loads(str(self._arrays.pop('meta')))
    if self.meta.get('format') != io.BUNDLE_FORMAT:
      raise ValueError(f'{path} is a bundle of format {self.meta.get("format")}; this version reads '
                       f'format {io.BUNDLE_FORMAT}. Export it again with launch/export_data.py.')
    self.steps = int(self.meta['steps'])
    self._inputs = {}
    if self.meta.get('examples'):   # the raw examples live in a file shared by several bundles
      examples = os.path.join(os.path.dirname(os.path.abspath(path)), self.meta['examples'])
      if not os.path.exists(examples):
        raise FileNotFoundError(f'{path} keeps its examples in {examples}, which does not exist: '
                                f'copy it next to the bundle (same relative path).')
      with np.load(examples, allow_pickle=False) as f:
        raw = {k: f[k] for k in f.files if k != 'meta'}
      if io.examples_digest(raw) != self.meta['examples_sha256']:
        raise ValueError(f'{examples} holds other examples than {path} was exported with; export '
                         f'both again.')
      self._arrays.update(raw)

  # ------------------------------------------------------------------ checks

  def check_config(self, config) -> None:
    """Raises ValueError naming every field in which `config` disagrees with the bundle."""
    saved, mine = self.meta['data_fields'], io.bundle_fields(config)
    diffs = [f'config.{k}={mine.get(k)!r} (bundle: {saved.get(k)!r})'
             for k in sorted(set(saved) | set(mine)) if mine.get(k) != saved.get(k)]
    if tasks_per_step(config) != self.meta['tasks_per_step']:
      diffs.append(f'tasks per step = devices x config.task.tasks_per_device = '
                   f'{tasks_per_step(config)} (bundle: {self.meta["tasks_per_step"]})')
    if int(config.train.num_steps) > self.steps:
      diffs.append(f'config.train.num_steps={int(config.train.num_steps)} (the bundle holds '
                   f'{self.steps} steps)')
    for split, field in (('test', 'eval.num_episodes'), ('val', 'train.val_episodes')):
      need = int(io.config_field(config, field))
      have = self.meta['episodes'].get(split, 0)
      if (split == 'test' or config.train.eval_every) and need > have:
        diffs.append(f'config.{field}={need} ({have} {split} episodes in the bundle)')
    if jax.process_count() > 1:
      diffs.append(f'{jax.process_count()} processes (a bundle holds one host\'s batches)')
    if diffs:
      raise ValueError(f'{self.path} was exported for other settings: {"; ".join(diffs)}. Export '
                       f'it again for this config (python launch/export_data.py --config ... '
                       f'--steps N --out ...) or change the config.')

  # ------------------------------------------------------------------ inputs

  def _side_inputs(self, side: str) -> np.ndarray:
    if side not in self._inputs:
      info = self.meta[side]
      self._inputs[side] = to_input(self._arrays[f'{side}.raw'], modality=info['modality'],
                                    input_shape=info['input_shape'])
    return self._inputs[side]

  # ------------------------------------------------------------------ the data API

  def make_splits(self, config, workdir: str | None = None) -> dict[str, list[str]]:
    self.check_config(config)
    if workdir is not None and jax.process_index() == 0:
      _write_json_once(workdir, io.SPLITS_FILE, self.meta['splits_record'], 'class split')
    return {k: list(self.meta['splits_record'][k]) for k in ('train', 'val', 'test')}

  def make_train_iterator(self, config, *, start_step: int = 0,
                          workdir: str | None = None) -> Iterator[dict]:
    self.check_config(config)
    if int(start_step) != start_step or not 0 <= start_step <= self.steps:
      raise ValueError(f'start_step={start_step!r} is outside the bundle\'s {self.steps} steps.')
    if workdir is not None and jax.process_index() == 0:
      _write_json_once(workdir, io.TARGET_SUBSET_FILE, self.meta['target_subset'],
                       'target training subset')
    devices = parallel.num_batch_devices(config)
    lead = ((devices,) if devices else ()) + (int(config.task.tasks_per_device),)
    leaves = {k[len('train.'):]: v for k, v in self._arrays.items() if k.startswith('train.')}
    gather = device_gather.DeviceGather(self._side_inputs('source'), self._side_inputs('target'),
                                        pmap=devices is not None)

    def index_batch(step):
      batch = {}
      for path, array in leaves.items():
        node = batch
        *parents, name = path.split('.')
        for p in parents:
          node = node.setdefault(p, {})
        node[name] = array[step].reshape(lead + array.shape[2:])
      return batch

    def batches():
      for step in range(int(start_step), self.steps):
        yield gather(index_batch(step))
    return batches()

  def make_eval_episodes(self, config, split: str, num_episodes: int | None = None,
                         workdir: str | None = None) -> dict:
    del workdir
    self.check_config(config)
    have = self.meta['episodes'].get(split, 0)
    num = have if num_episodes is None else int(num_episodes)
    if num > have:
      raise ValueError(f'{num} {split!r} episodes asked for; {self.path} holds {have}. Export it '
                       f'again with more (config.eval.num_episodes / config.train.val_episodes).')
    e = {k: self._arrays[f'episodes.{split}.{k}'][:num]
         for k in ('support_idx', 'support_y', 'support_clean_y', 'query_idx', 'query_y')}
    x = self._side_inputs('target')
    return {'support': {'x': x[e['support_idx']], 'y': e['support_y']},
            'query': {'x': x[e['query_idx']], 'y': e['query_y']},
            'support_clean_y': e['support_clean_y']}

  def make_retrieval_set(self, config, split: str) -> dict:
    self.check_config(config)
    key = f'retrieval.{split}.'
    if key + 'y' not in self._arrays:
      raise ValueError(f'{self.path} holds no retrieval set for split {split!r}.')
    return {'source_x': self._side_inputs('source')[self._arrays[key + 'source_idx']],
            'target_x': self._side_inputs('target')[self._arrays[key + 'target_idx']],
            'y': self._arrays[key + 'y']}

  def make_selection_data(self, config) -> dict:
    """The checkpoint-selection data the bundle holds (`data/selection.py`; no target label)."""
    self.check_config(config)
    indices = {k[len('selection.'):]: v for k, v in self._arrays.items()
               if k.startswith('selection.')}
    select = config.train.get('select', 'target_val')
    if select in ('source_val', 'align_val') and not any(k.startswith(select) for k in indices):
      raise ValueError(f'{self.path} holds no {select!r} selection data: export it again with '
                       f'config.train.select={select!r}.')
    return io.gather_selection(indices, self._side_inputs)
