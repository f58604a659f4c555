"""TFDS builders of meta_align_jax. Importing this package registers each builder in
`meta_align_jax.data.registry` under the name `config.data.*_dataset` uses.
"""

# Real datasets (local copies, scikit-learn, prepared TFDS catalog datasets).
from meta_align_jax.data.builders import catalog  # noqa: F401
from meta_align_jax.data.builders import cmu_wilderness  # noqa: F401
from meta_align_jax.data.builders import esc50  # noqa: F401
from meta_align_jax.data.builders import fsdd  # noqa: F401
from meta_align_jax.data.builders import omniglot  # noqa: F401
from meta_align_jax.data.builders import sklearn_digits  # noqa: F401
from meta_align_jax.data.builders import yummly28k  # noqa: F401
from meta_align_jax.data.builders import synthetic_concepts  # noqa: F401  (embedded default)
