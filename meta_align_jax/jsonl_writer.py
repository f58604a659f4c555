"""A clu `MetricWriter` appending scalars to a JSON-lines file (WORKDIR/metrics.jsonl).

One line per `write_scalars` call: `{"step": s, "<name>": value, ...}`. A run resumed from step
s first drops the lines of steps after s (they were computed by the interrupted run and are
computed again) and any line cut short by a kill, so the file reads as one uninterrupted run.
Only scalars are written; images, audio and the like are ignored.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from meta_align_jax import clu_compat  # noqa: F401  (before clu: its writers import TensorFlow)
from clu.metric_writers import interface


def _load_lines(path: str, keep_through_step: int) -> list[str]:
  if not os.path.exists(path):
    return []
  kept = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue   # a line cut short when the previous run was killed
      if isinstance(record, dict) and record.get('step', 0) <= keep_through_step:
        kept.append(json.dumps(record))
  return kept


def _scalar(value) -> Any:
  value = float(value)
  return value if math.isfinite(value) else str(value)   # JSON has no NaN/Inf


class JsonlWriter(interface.MetricWriter):
  """Writes scalars as JSON lines; `resume_step` trims lines of later steps left by a past run."""

  def __init__(self, path: str, *, resume_step: int = 0):
    self._path = path
    kept = _load_lines(path, resume_step)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
      f.writelines(line + '\n' for line in kept)
    os.replace(tmp, path)
    self._file = open(path, 'a')

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    record = {'step': int(step), **{k: _scalar(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(record) + '\n')

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_images(self, step, images):
    del step, images

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_texts(self, step, texts):
    del step, texts

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def write_hparams(self, hparams):
    del hparams

  def flush(self):
    self._file.flush()

  def close(self):
    if not self._file.closed:
      self._file.close()
