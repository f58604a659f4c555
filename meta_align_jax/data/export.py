"""Writes a data bundle for `meta_align_jax.feeds.exported.ExportedData` (reads it without
TensorFlow); the format both share is `meta_align_jax.io`'s.

The bundle holds what the data pipeline gives a run of `config`, computed here with the real
pipeline: the raw examples of both modalities, the index batches of the first `steps` training
steps, the fixed evaluation episodes and retrieval pairs, the split and the target subset.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np

from meta_align_jax import io
from meta_align_jax.data import convert
from meta_align_jax.data import episodes as episodes_lib
from meta_align_jax.data import evaluation
from meta_align_jax.data import loading
from meta_align_jax.data import selection
from meta_align_jax.data.loading import ModalityData, Sources
from meta_align_jax.data.tfsetup import configure

_EPISODE_FIELDS = ('support_idx', 'support_y', 'support_clean_y', 'query_idx', 'query_y')


def _raw_sources(config) -> Sources:
  """The examples as the builders stored them (before conversion to input_shape)."""
  data_dir, manual_dir = loading._dirs(config)  # pylint: disable=protected-access
  out = {}
  for side in io.SIDES:
    name, feature = config.data[f'{side}_dataset'], config.data[f'{side}_feature']
    arrays, names = loading._load_split(name, data_dir, manual_dir)  # pylint: disable=protected-access
    out[side] = ModalityData(x=arrays[feature], label=arrays['label'].astype(np.int32),
                             class_names=list(names), example_id=arrays['example_id'])
  return Sources(**out)


def _converted(config, raw: Sources) -> Sources:
  out = {}
  for side in io.SIDES:
    m = getattr(raw, side)
    vocab = int(config.model.vocab_size) if config[side].modality == 'text' else None
    x = convert.to_input(m.x, modality=config[side].modality, input_shape=config[side].input_shape,
                         side=side, what=f'{side} examples', vocab_size=vocab)
    out[side] = ModalityData(x=x, label=m.label, class_names=m.class_names,
                             example_id=m.example_id)
  return Sources(**out)


def _flatten(tree: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[prefix + k] = v
  return out


def _write_examples(path: str, arrays: dict, digest: str) -> None:
  """Writes the examples file, or checks that the one at `path` holds the same examples."""
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      saved = json.loads(str(f['meta']))
    if saved.get('sha256') != digest:
      raise ValueError(f'--examples {path} holds other examples (another dataset, feature or data '
                       f'version) than this config\'s; name a new file.')
    return
  tmp_path = f'{path}.tmp{os.getpid()}.npz'
  np.savez_compressed(tmp_path, meta=np.asarray(json.dumps({'sha256': digest})), **arrays)
  os.replace(tmp_path, path)


def export_bundle(config, path: str, *, steps: int, raw_sources: Sources | None = None,
                  examples_path: str | None = None, log_every: int = 0,
                  devices: int | None = None) -> dict:
  """Runs `config`'s data pipeline and writes the bundle to `path`; returns its metadata.

  Args:
    config: the experiment config the bundle serves (see `io.BUNDLE_FIELDS`).
    path: the `.npz` file to write (written to a temporary file, then renamed).
    steps: training steps to export (a run may train up to this many).
    raw_sources: in-memory raw examples (tests); the datasets `config.data` names when None.
    examples_path: write the raw examples to this separate file (shared by the bundles of
      several configs over the same data, and checked to be the same) instead of into `path`.
    log_every: print progress every this many steps (0: never).
    devices: the batch's device axis on this host (`parallel.num_batch_devices(config)`; None:
      none); a run reading the bundle must have as many tasks per step.
  """
  configure()
  if int(steps) != steps or steps < 1:
    raise ValueError(f'--steps={steps!r}: export at least one training step.')
  raw = raw_sources if raw_sources is not None else _raw_sources(config)
  sources = _converted(config, raw)
  arrays = {}
  with tempfile.TemporaryDirectory() as tmp:
    ds = episodes_lib.train_dataset(config, workdir=tmp, sources=sources, devices=devices,
                                   index_only=True)
    batches = []
    for step, batch in enumerate(ds.as_numpy_iterator()):
      if step == steps:
        break
      batches.append(_flatten(batch))
      if log_every and (step + 1) % log_every == 0:
        print(f'exported {step + 1} / {steps} steps', flush=True)
    tasks = (devices or 1) * int(config.task.tasks_per_device)
    for key in batches[0]:   # every leaf is [*lead, n]: stored as [steps, tasks, n]
      arrays[f'train.{key}'] = np.stack([b[key] for b in batches]).reshape(len(batches), tasks, -1)
    with open(os.path.join(tmp, io.SPLITS_FILE)) as f:
      splits_record = json.load(f)
    with open(os.path.join(tmp, io.TARGET_SUBSET_FILE)) as f:
      target_subset = json.load(f)
  counts = {config.eval.split: int(config.eval.num_episodes)}
  counts['val'] = max(counts.get('val', 0), int(config.train.val_episodes))
  for split, num in counts.items():
    e = evaluation.eval_episodes(config, split, num, sources=sources)
    for k in _EPISODE_FIELDS:
      arrays[f'episodes.{split}.{k}'] = getattr(e, k)
  for k, v in selection.selection_indices(config, sources).items():
    arrays[f'selection.{k}'] = v
  if config.eval.retrieval:
    for k, v in evaluation.retrieval_indices(config, config.eval.split, sources=sources).items():
      arrays[f'retrieval.{config.eval.split}.{k}'] = v
  meta = {
      'format': io.BUNDLE_FORMAT,
      'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
      'steps': len(batches),
      'tasks_per_step': tasks,
      'data_fields': io.bundle_fields(config),
      'splits_record': splits_record,
      'target_subset': target_subset,
      'episodes': counts,
  }
  examples = {f'{side}.raw': np.ascontiguousarray(getattr(raw, side).x) for side in io.SIDES}
  meta['examples_sha256'] = io.examples_digest(examples)
  if examples_path is None:
    arrays.update(examples)
    meta['examples'] = None
  else:
    _write_examples(examples_path, examples, meta['examples_sha256'])
    meta['examples'] = os.path.relpath(os.path.abspath(examples_path),
                                       os.path.dirname(os.path.abspath(path)))
  for side in io.SIDES:
    m = getattr(raw, side)
    meta[side] = {'modality': config[side].modality,
                  'input_shape': [int(d) for d in config[side].input_shape],
                  'dataset': config.data[f'{side}_dataset'],
                  'feature': config.data[f'{side}_feature'],
                  'num_examples': int(m.x.shape[0]), 'raw_shape': list(m.x.shape[1:]),
                  'raw_dtype': str(m.x.dtype)}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp_path = f'{path}.tmp{os.getpid()}.npz'
  np.savez_compressed(tmp_path, meta=np.asarray(json.dumps(meta)), **arrays)
  os.replace(tmp_path, path)
  return meta
