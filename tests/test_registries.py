"""Extension points: a dataset or an evaluator is one class plus its registration."""

import ml_collections
import pytest

from meta_align_jax import evaluate
from meta_align_jax.data import registry


def test_dataset_registry_decorator_and_errors():
  datasets = registry.Registry('dataset', 'config.data.*_dataset')

  @datasets.register('toy')
  class Toy:
    pass

  assert datasets.get('toy') is Toy and 'toy' in datasets and datasets.names() == ['toy']
  datasets.register('other', int)   # the direct form
  assert datasets.names() == ['other', 'toy']
  with pytest.raises(ValueError, match=r"config.data.\*_dataset='nope' is not a known dataset; "
                                       r"known: \['other', 'toy'\]"):
    datasets.get('nope')


def test_every_builder_is_registered_by_the_package():
  import meta_align_jax.data.builders  # noqa: F401  pylint: disable=g-import-not-at-top
  assert {'fsdd', 'omniglot', 'sklearn_digits', 'esc50', 'yummly28k', 'cmu_wilderness',
          'cifar10', 'cifar100', 'speech_commands'} <= set(registry.names())


def test_evaluators_are_asked_whether_a_config_wants_them(monkeypatch):
  monkeypatch.setattr(evaluate, 'EVALUATORS', dict(evaluate.EVALUATORS))
  config = ml_collections.ConfigDict({'eval': {'retrieval': False, 'probe': True}})
  assert evaluate.evaluator_names(config) == ('few_shot',)
  config.eval.retrieval = True
  assert evaluate.evaluator_names(config) == ('few_shot', 'retrieval')

  @evaluate.register('probe', enabled=lambda c: c.eval.probe)
  class Probe:
    def __init__(self, config, model, data, *, split, workdir=None, jit_cache=None):
      self.split = split

    def __call__(self, params):
      return {'probe': params}

  assert evaluate.evaluator_names(config) == ('few_shot', 'retrieval', 'probe')
  built = evaluate.make_evaluators(config, None, None, split='val', names=('probe',))
  assert isinstance(built['probe'], Probe) and built['probe'].split == 'val'
  assert evaluate.run_evaluators(built, 7) == {'probe': 7}
  config.eval.probe = False
  assert evaluate.evaluator_names(config) == ('few_shot', 'retrieval')
  with pytest.raises(ValueError, match="evaluator named 'probe' is already registered"):
    evaluate.register('probe')(Probe)
  with pytest.raises(ValueError, match=r"Unknown evaluator\(s\) \['nope'\]"):
    evaluate.make_evaluators(config, None, None, split='val', names=('nope',))
