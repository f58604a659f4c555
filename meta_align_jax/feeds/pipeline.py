"""The data package's pipeline as the data API of the training loop and the evaluation.

`Pipeline(sources=None)` has the four functions `train.train` and `evaluate.evaluate` call
(`make_splits`, `make_train_iterator`, `make_eval_episodes`, `make_retrieval_set`) over
`meta_align_jax.data`, which is imported on first use (it is the part that needs TensorFlow).
The training batches are gathered where `config.data.gather` says (`gather_mode`): by tf.data on
the host, or from index batches on the device (`device_gather`), the same values either way. The
batch's device axis is the execution's (`parallel.num_batch_devices`), handed to the data package
as a number.

`Pipeline()` loads the datasets `config.data` names; `Pipeline(sources)` serves in-memory
`meta_align_jax.data.Sources` (tests, research code).
"""

from __future__ import annotations

from typing import Iterator

from meta_align_jax import parallel
from meta_align_jax.feeds import device_gather, gather_mode


def _data():
  from meta_align_jax import data  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return data


class Pipeline:
  """The data API over `meta_align_jax.data` (see the module docstring)."""

  def __init__(self, sources=None):
    self.sources = sources

  def _sources(self, config):
    return self.sources if self.sources is not None else _data().load_sources(config)

  def make_splits(self, config, workdir: str | None = None) -> dict[str, list[str]]:
    return _data().make_splits(config, workdir, sources=self.sources)

  def make_train_iterator(self, config, *, start_step: int = 0,
                          workdir: str | None = None) -> Iterator[dict]:
    """Training batches: numpy arrays (gathered on the host) or device arrays (on the device)."""
    gather_mode.check_config(config)
    sources = self._sources(config)
    devices = parallel.num_batch_devices(config)
    # (single-modality: one array, held once)
    mode = gather_mode.resolve(config, device_gather.input_nbytes(sources.source.x, sources.target.x))
    batches = _data().make_train_iterator(config, start_step=start_step, workdir=workdir,
                                          sources=sources, devices=devices,
                                          index_only=mode == 'device')
    if mode == 'host':
      return batches
    gather = device_gather.DeviceGather(sources.source.x, sources.target.x,
                                        pmap=devices is not None)
    return gather.iterate(batches)

  def make_eval_episodes(self, config, split: str, num_episodes: int | None = None,
                         workdir: str | None = None) -> dict:
    return _data().make_eval_episodes(config, split, num_episodes=num_episodes, workdir=workdir,
                                      sources=self.sources)

  def make_retrieval_set(self, config, split: str, **kwargs) -> dict:
    return _data().make_retrieval_set(config, split, sources=self.sources, **kwargs)

  def make_selection_data(self, config) -> dict:
    """Checkpoint-selection data without target labels (`data/selection.py`)."""
    return _data().make_selection_data(config, sources=self.sources)
