"""Files and formats shared by the data package and the training stack, depending on neither.

`meta_align_jax.data` (TensorFlow side) and the core, the feeds and the loop (no TensorFlow) both
read and write these files; this module imports only the standard library and numpy, so either
side can import it without pulling in the other.

- The files of a work directory, named once.
- `write_atomic`, `config_field`: file and config helpers.
- `gather_selection`: the checkpoint-selection data from its indices (both sides).
- The exported data bundle's format (`launch/export_data.py` writes it with the data package,
  `meta_align_jax.feeds.exported` reads it without TensorFlow): version, the config fields a
  bundle fixes, the digest of its examples, and the one image conversion both sides use.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import numpy as np

# --------------------------------------------------------------------------- a work directory

CONFIG_FILE = 'config.json'                      # the config of the latest run (checkpoint.py)
METRICS_FILE = 'metrics.jsonl'                   # training and meta-val scalars (train.py)
RESULTS_FILE = 'eval_results.json'               # the last evaluation; marks a finished run
# The accuracy of every fixed meta-test episode of the last evaluation (float32 [episodes]):
# runs on one seed share their episodes, so two methods compare episode by episode.
EPISODES_FILE = 'episode_accuracies.npy'
SPLITS_FILE = 'splits.json'                      # the class split (data/splits.py)
TARGET_SUBSET_FILE = 'target_train_subset.json'  # labelled target data used in training


def write_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename: no reader sees half a file."""
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def tuples_from_json(value):
  """JSON turns tuples into lists; configs use tuples for every sequence field."""
  if isinstance(value, dict):
    return {k: tuples_from_json(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(tuples_from_json(v) for v in value)
  return value


def config_field(config, dotted: str):
  """`config.<dotted>` (None when a group or field is missing); JSON lists as tuples."""
  node = config
  for part in dotted.split('.'):
    if part not in node:
      return None
    node = node[part]
  return tuples_from_json(node) if isinstance(node, list) else node


# --------------------------------------------------------------------------- exported bundles

BUNDLE_FORMAT = 1
SIDES = ('source', 'target')

# Config fields the exported data depend on: a run must agree with the bundle on all of them.
BUNDLE_FIELDS = (
    'seed', 'data.source_dataset', 'data.source_feature', 'data.target_dataset',
    'data.target_feature', 'data.split_fractions', 'data.target_train_shots',
    'data.target_train_classes', 'data.target_noise', 'data.align_noise', 'data.noise_kind',
    'task.ways', 'task.shots', 'task.queries', 'task.meta_on', 'align.enabled', 'align.kind',
    'align.pairs', 'align.ways', 'align.classes', 'source.modality', 'source.input_shape',
    'target.modality', 'target.input_shape', 'eval.ways', 'eval.shots', 'eval.queries',
)


# Recorded only when the config turns them on, so bundles written before they existed still match.
OPTIONAL_BUNDLE_FIELDS = ('lowres.enabled', 'lowres.labelled_classes', 'lowres.labelled_shots',
                          'lowres.pairs', 'lowres.pair_instances', 'lowres.pseudo_labels',
                          'train.select',
                          'train.val_episodes')


def bundle_fields(config) -> dict:
  """The values of `BUNDLE_FIELDS` in `config`, JSON-comparable (tuples as lists); with
  `config.lowres.enabled` or a label-free `config.train.select`, also `OPTIONAL_BUNDLE_FIELDS`."""
  fields = BUNDLE_FIELDS
  if config_field(config, 'lowres.enabled') or config_field(config, 'train.select') in (
      'source_val', 'align_val'):
    fields = fields + OPTIONAL_BUNDLE_FIELDS
  return {f: json.loads(json.dumps(config_field(config, f), default=list)) for f in fields}


def gather_selection(indices: dict, side_inputs: Callable[[str], np.ndarray]) -> dict:
  """The checkpoint-selection data with inputs, from its indices (`data/selection.py`):
  {'source_val': {'support': {'x','y'}, 'query': {...}}} and/or {'align_val': {'source_x',
  'target_x'}}. `side_inputs('source' | 'target')` gives a side's inputs, asked only when needed."""
  out = {}
  if 'source_val.support_idx' in indices:
    x = side_inputs('source')
    out['source_val'] = {part: {'x': x[indices[f'source_val.{part}_idx']],
                                'y': indices[f'source_val.{part}_y']}
                         for part in ('support', 'query')}
  if 'align_val.source_idx' in indices:
    out['align_val'] = {'source_x': side_inputs('source')[indices['align_val.source_idx']],
                        'target_x': side_inputs('target')[indices['align_val.target_idx']]}
  return out


def examples_digest(examples: dict) -> str:
  """sha256 over the raw example arrays (names, dtypes, shapes and bytes), in name order."""
  h = hashlib.sha256()
  for name in sorted(examples):
    a = np.ascontiguousarray(examples[name])
    h.update(f'{name}:{a.dtype.str}:{a.shape}'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def images_to_input(x: np.ndarray, input_shape, resize: Callable, chunk: int) -> np.ndarray:
  """Images `[n, h, w, 1|3]` -> float32 `[n, *input_shape]` in [0, 1], `chunk` at a time.

  Integers are scaled by 1/255; `resize(float32 [m, h, w, ch]) -> [m, H, W, ch]` is called where
  the size differs (bilinear, antialiased: `tf.image.resize` in the data package, `jax.image`
  in the bundle reader); channels are then tiled (1 -> 3) or averaged (3 -> 1).
  """
  h, w, c = (int(d) for d in input_shape)
  scale = np.float32(1.0 / 255.0 if np.issubdtype(x.dtype, np.integer) else 1.0)
  out = np.empty((x.shape[0], h, w, x.shape[-1]), np.float32)
  for start in range(0, x.shape[0], chunk):
    part = x[start:start + chunk].astype(np.float32) * scale
    if part.shape[1:3] != (h, w):
      part = resize(part)
    out[start:start + chunk] = part
  np.clip(out, 0.0, 1.0, out=out)
  if out.shape[-1] == 1 and c == 3:
    out = np.repeat(out, 3, axis=-1)
  elif out.shape[-1] == 3 and c == 1:
    out = out.mean(axis=-1, keepdims=True, dtype=np.float32)
  return out
