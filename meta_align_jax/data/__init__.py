"""Data for meta-alignment: TFDS builders, class splits, episode pipeline, evaluation episodes.

The only package of meta_align_jax that imports TensorFlow, TFDS or librosa, and it imports
nothing of the training stack (only its own modules and `meta_align_jax.io`). What puts its
batches on the devices is `meta_align_jax.feeds` (`feeds.pipeline.Pipeline` is the data API the
training loop uses by default).

  load_modality(dataset, feature, config) -> ModalityData
  make_splits(config, workdir=None) -> {'train': [...], 'val': [...], 'test': [...]}
  make_train_iterator(config, *, start_step=0, workdir=None, devices=None, index_only=False)
      -> iterator of host batches (or of index batches for the device gather)
  make_eval_episodes(config, split, num_episodes=None, workdir=None) -> fixed target episodes
  make_retrieval_set(config, split) -> {'source_x', 'target_x', 'y'}

Every function that needs data also takes `sources=Sources(source=..., target=...)` to use
in-memory `ModalityData` instead of loading the datasets `config.data` names (`load_sources`).
A new dataset is one TFDS builder class registered with `@registry.register(name)` in
`data/builders/` (imported by `builders/__init__.py`).

Importing this package registers its TFDS builders (`meta_align_jax.data.builders`), so that
`tfds.builder('synthetic_concepts')` works after `import meta_align_jax.data`.
"""

from meta_align_jax.data import builders  # noqa: F401  (registers the TFDS builders)

from meta_align_jax.data.episodes import make_train_iterator
from meta_align_jax.data.evaluation import make_eval_episodes
from meta_align_jax.data.evaluation import make_retrieval_set
from meta_align_jax.data.loading import load_modality
from meta_align_jax.data.loading import load_sources
from meta_align_jax.data.loading import ModalityData
from meta_align_jax.data.selection import make_selection_data
from meta_align_jax.data.loading import Sources
from meta_align_jax.data.splits import make_splits

__all__ = [
    'ModalityData',
    'Sources',
    'load_modality',
    'load_sources',
    'make_eval_episodes',
    'make_retrieval_set',
    'make_splits',
    'make_train_iterator',
]
