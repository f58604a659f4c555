"""meta_align_jax: cross-modal meta-alignment in JAX/Flax.

Learn to classify in a low-resource target modality by meta-learning in a source modality and
aligning both modalities' embeddings with weakly paired data. The core (models, losses,
meta-learners, the train step) imports no TensorFlow, TFDS or librosa; only
`meta_align_jax.data` does.
"""

from meta_align_jax.batches import random_batch, random_episodes
from meta_align_jax.checkpoint import restore
from meta_align_jax.fast.execution import Execution
from meta_align_jax.losses import register_loss
from meta_align_jax.meta.learners import register_learner
from meta_align_jax.models.registry import MetaAlignModel, build_model, register_encoder
from meta_align_jax.parallel import replicate, unreplicate
from meta_align_jax.train_step import (TrainState, init_train_state, make_eval_step,
                                       make_train_step)

__all__ = [
    'Execution', 'MetaAlignModel', 'TrainState', 'build_model', 'init_train_state',
    'make_eval_step', 'make_train_step', 'random_batch', 'random_episodes', 'register_encoder',
    'register_learner', 'register_loss', 'replicate', 'restore', 'unreplicate',
]
__version__ = '0.1.0'
