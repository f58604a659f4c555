"""scikit-learn's 8x8 handwritten digits (UCI optdigits test set), as uint8 images.

The 1,797 images ship inside scikit-learn, so nothing is downloaded and no manual directory is
needed. Classes are the digit words 'zero'..'nine', the same names as `fsdd`, so the two pair into
a small real image -> speech task; the episode pipeline resizes the 8x8 images to the config's
input shape.
"""

from __future__ import annotations

import numpy as np

from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.tfsetup import tfds

_MAX_INTENSITY = 16  # load_digits counts set pixels of a 4x4 block of the 32x32 bitmap: 0..16


@registry.register('sklearn_digits')
class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn `load_digits`: 'image' uint8 `[8, 8, 1]`, digit-word labels."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'All 1,797 images, intensities 0..16 scaled to 0..255.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Handwritten digits from scikit-learn (sklearn.datasets.load_digits): 1,797 8x8 '
            'grey images, the test part of the UCI "Optical Recognition of Handwritten Digits" '
            'data. Pixel values 0..16 are scaled to uint8 0..255 (bright strokes on black). '
            "Labels are the digit words 'zero'..'nine'. A single 'train' split holds every image."),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=_common.DIGIT_NAMES),
            'example_id': tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://archive.ics.uci.edu/dataset/80',
        license='CC BY 4.0',
        citation="""\
@misc{alpaydin1998optdigits,
  author       = {Alpaydin, E. and Kaynak, C.},
  title        = {Optical Recognition of Handwritten Digits},
  year         = {1998},
  howpublished = {UCI Machine Learning Repository},
  doi          = {10.24432/C50P49}
}
@article{pedregosa2011scikit,
  title   = {Scikit-learn: Machine Learning in {P}ython},
  author  = {Pedregosa, F. and Varoquaux, G. and Gramfort, A. and others},
  journal = {Journal of Machine Learning Research},
  volume  = {12},
  pages   = {2825--2830},
  year    = {2011}
}""",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # the data ships with scikit-learn
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    return {'train': self._generate_examples(digits.images, digits.target)}

  def _generate_examples(self, images: np.ndarray, targets: np.ndarray):
    pixels = np.rint(images * (255.0 / _MAX_INTENSITY)).clip(0, 255).astype(np.uint8)
    for i, (image, target) in enumerate(zip(pixels, targets)):
      yield i, {'image': image[..., None], 'label': int(target), 'example_id': i}
