"""Encoder registry: config strings -> Flax modules, and the model used by the meta-learners.

`build_model(config)` returns a `MetaAlignModel`: two towers (encoder + projection into the
shared space Z, one per modality) and a classifier head on Z. Parameters are one dict with
top-level groups `source`, `target`, `head` (and `global_head` for supervised baselines); the
meta-learners adapt groups by name. Everything is a pure function of the parameters through
`Module.apply`.

With `config.model.shared_encoder` both modalities go through one encoder: `source` and `target`
hold only each modality's own first convolutional block (a stem: input channels and layouts
differ), and a fourth group `shared` holds the rest of the Conv-4 and the projection into Z.

How the model runs (which convolution module the encoders use, the LSTM's unroll, encoders
mapped over tasks) is the `Execution` resolved once by `build_model` (fast/execution.py) and kept
on the model as `model.execution`; it changes speed, never the numbers or the parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from meta_align_jax.fast import execution as execution_lib
from meta_align_jax.fast import mapped
from meta_align_jax.fast.execution import Execution
from meta_align_jax.models import image, sequence
from meta_align_jax.models.layers import NORMS
from meta_align_jax.modalities import MODALITIES
from meta_align_jax.registry import Registry

SIDES = ('source', 'target')
SINGLE = ('target',)   # config.task.modalities of single-modality few-shot learning


def sides(config) -> tuple[str, ...]:
  """The modalities (sides) the model has: `config.task.modalities`, ('source', 'target') by
  default; ('target',) is single-modality few-shot learning (no source encoder)."""
  return tuple(config.task.get('modalities', SIDES))


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
  make: Callable[..., nn.Module]   # (model_config, dtype) -> module; model_config.conv is the
                                   # side's convolution module (nn.Conv or a faster one, from
                                   # the execution) and model_config.rnn_unroll the LSTM's unroll
  modalities: tuple[str, ...]
  input_rank: int                  # rank of one example (3 for images, 2 for spectrograms, 1 or 2 for text)


def _rnn(bidirectional):
  return lambda m, dt: sequence.RNNEncoder(m.vocab_size, m.hidden, m.text_layers, bidirectional,
                                           m.text_pool, dt, m.rnn_unroll)


ENCODERS = Registry('encoder', 'config.<side>.encoder')


def register_encoder(name: str, spec: EncoderSpec | None = None, *,
                     modalities: tuple[str, ...] = (), input_rank: int = 0,
                     overwrite: bool = False):
  """Adds an encoder that configs can name: `register_encoder(name, spec)`, or as a decorator
  `@register_encoder(name, modalities=(...), input_rank=r)` on a `(model_config, dtype) -> module`
  function."""
  if spec is None:
    def add(make):
      ENCODERS.register(name, EncoderSpec(make, tuple(modalities), input_rank), overwrite=overwrite)
      return make
    return add
  return ENCODERS.register(name, spec, overwrite=overwrite)


register_encoder('conv4', EncoderSpec(lambda m, dt: image.Conv4(m.width, m.norm, dt, m.conv),
                                      ('image',), 3))
register_encoder('resnet12', EncoderSpec(
    lambda m, dt: image.ResNet12(m.width, m.norm, dt, m.conv), ('image',), 3))
register_encoder('resnet18', EncoderSpec(
    lambda m, dt: image.ResNet18(m.width, m.norm, dt, m.conv), ('image',), 3))
register_encoder('mel_cnn', EncoderSpec(lambda m, dt: sequence.MelCNN(m.width, m.norm, dt, m.conv),
                                        ('audio', 'speech'), 2))
register_encoder('temporal_conv', EncoderSpec(
    lambda m, dt: sequence.TemporalConv(m.width, m.norm, dt, pool=m.text_pool, conv=m.conv),
    ('audio', 'speech'), 2))
register_encoder('lstm', EncoderSpec(_rnn(False), ('text', 'audio', 'speech'), 0))
register_encoder('bilstm', EncoderSpec(_rnn(True), ('text', 'audio', 'speech'), 0))
register_encoder('transformer', EncoderSpec(
    lambda m, dt: sequence.TransformerEncoder(m.vocab_size, m.hidden, max(1, m.text_layers),
                                              pool=m.text_pool, dtype=dt),
    ('text', 'audio', 'speech'), 0))


# Encoders whose modalities can share one encoder (`config.model.shared_encoder`): the 2-D
# convolutional ones, images `[H, W, C]` and spectrograms `[frames, mels]` (a one-channel image).
SHAREABLE_ENCODERS = ('conv4', 'mel_cnn')


class ConvStem(nn.Module):
  """A modality's own first Conv-4 block in front of a shared encoder; `[B, frames, mels]`
  spectrograms become one-channel images. Output: the feature map `[B, H/2, W/2, width]`."""
  width: int
  norm: str
  dtype: Any
  conv: Any = nn.Conv

  @nn.compact
  def __call__(self, x):
    if x.ndim == 3:
      x = x[..., None]
    return image.Conv4(self.width, self.norm, self.dtype, self.conv, blocks=1,
                       pool_output=False, name='stem')(x)


class Tower(nn.Module):
  """Encoder followed by a linear projection into Z; output float32 `[B, z_dim]`."""
  encoder: nn.Module
  z_dim: int

  @nn.compact
  def __call__(self, x):
    h = self.encoder(x)
    return nn.Dense(self.z_dim, dtype=jnp.float32, name='proj')(h.astype(jnp.float32))


class Head(nn.Module):
  """Classifier on Z: linear, or ReLU then linear as in the reference code."""
  num_classes: int
  kind: str = 'linear'

  @nn.compact
  def __call__(self, z):
    if self.kind == 'relu_linear':
      z = nn.relu(z)
    return nn.Dense(self.num_classes, dtype=jnp.float32)(z)


def _dtype(name: str):
  if name not in ('float32', 'bfloat16'):
    raise ValueError(f"config.model.compute_dtype={name!r}: use 'float32' or 'bfloat16'.")
  return jnp.float32 if name == 'float32' else jnp.bfloat16


def input_dtype(side_config) -> Any:
  """Token ids are int32; everything else float32."""
  if side_config.modality == 'text' and len(tuple(side_config.input_shape)) == 1:
    return jnp.int32
  return jnp.float32


@dataclasses.dataclass(frozen=True)
class MetaAlignModel:
  """Source and target towers into Z plus classifier heads; pure functions of `params`."""
  source: Tower | None   # None in single-modality few-shot learning (config.task.modalities)
  target: Tower
  head: Head
  global_head: Head | None
  source_input: jax.ShapeDtypeStruct | None
  target_input: jax.ShapeDtypeStruct
  # How it runs (resolved once from config.execution; speed only, never the numbers).
  execution: Execution = Execution()
  # With a shared encoder, `source` and `target` are the modalities' stems (`ConvStem`) and
  # `shared` the tower both go through (parameter group 'shared').
  shared: Tower | None = None

  def init(self, rng) -> dict:
    """Initial parameters (one compiled call: eager op-by-op init is slow on CPU)."""
    return jax.jit(self._init)(rng)

  def _init(self, rng) -> dict:
    ks, kt, kh, kg = jax.random.split(rng, 4)
    xt = jnp.zeros((2,) + self.target_input.shape, self.target_input.dtype)
    z = jnp.zeros((2, self.head_in_dim), jnp.float32)
    params = {}
    if self.source is not None:   # the same keys with or without a source: target and head
      xs = jnp.zeros((2,) + self.source_input.shape, self.source_input.dtype)   # keep values
      params['source'] = self.source.init(ks, xs)['params']
    params['target'] = self.target.init(kt, xt)['params']
    params['head'] = self.head.init(kh, z)['params']
    if self.shared is not None:
      # Derived from the source key, so models without a shared encoder keep their initial values.
      h = self.source.apply({'params': params['source']}, xs)
      params['shared'] = self.shared.init(jax.random.fold_in(ks, 1), h)['params']
    if self.global_head is not None:
      params['global_head'] = self.global_head.init(kg, z)['params']
    return params

  @property
  def head_in_dim(self) -> int:
    return (self.target if self.shared is None else self.shared).z_dim

  def embed(self, params: dict, x, side: str):
    """Embeds a batch `[B, ...]` of `side` ('source' or 'target') inputs into Z."""
    if side == 'source' and self.source is None:
      raise ValueError("This model has no source encoder (config.task.modalities=('target',), "
                       "single-modality few-shot learning): embed target inputs with "
                       "side='target'.")
    p = {k: params[k] for k in ((side, 'shared') if self.shared is not None else (side,))}
    fn = mapped.side_fn(self, side)
    if side in self.execution.map_encoders:   # speed only: task by task under vmap
      return mapped.mapped(fn)(p, x)
    return fn(p, x)

  def logits(self, params: dict, z, head: str = 'head'):
    module = self.head if head == 'head' else self.global_head
    return module.apply({'params': params[head]}, z)


class _SideModel:
  """`config.model` seen by one side's encoder, plus what the execution hands encoders: `conv`
  (that side's convolution module) and `rnn_unroll`."""

  def __init__(self, model_config, conv: Any = nn.Conv, rnn_unroll: int = 1):
    self._model, self.conv, self.rnn_unroll = model_config, conv, rnn_unroll

  def __getattr__(self, name):
    return getattr(self._model, name)


def _encoder(side: str, side_config, model_config, conv: Any = nn.Conv, rnn_unroll: int = 1):
  name = side_config.encoder
  spec = ENCODERS.get(name, f'config.{side}.encoder')
  if side_config.modality not in MODALITIES:
    raise ValueError(f'config.{side}.modality={side_config.modality!r}: use one of {MODALITIES}.')
  if side_config.modality not in spec.modalities:
    raise ValueError(f'config.{side}.encoder={name!r} does not encode {side_config.modality!r} '
                     f'inputs; it encodes {spec.modalities}.')
  shape = tuple(side_config.input_shape)
  if spec.input_rank and len(shape) != spec.input_rank:
    raise ValueError(f'config.{side}.input_shape={shape} has rank {len(shape)}; encoder '
                     f'{name!r} expects rank {spec.input_rank} per example.')
  if model_config.norm not in NORMS:
    raise ValueError(f'config.model.norm={model_config.norm!r}: use one of {NORMS}.')
  return spec.make(_SideModel(model_config, conv, rnn_unroll), _dtype(model_config.compute_dtype))


def check_shared_encoder(config) -> None:
  """`config.model.shared_encoder` needs 2-D convolutional encoders on both sides."""
  if not config.model.get('shared_encoder', False):
    return
  for side in ('source', 'target'):
    if config[side].encoder not in SHAREABLE_ENCODERS:
      raise ValueError(
          f'config.model.shared_encoder=True with config.{side}.encoder='
          f'{config[side].encoder!r}: a shared encoder is built for the 2-D convolutional '
          f'encoders {SHAREABLE_ENCODERS} (images and spectrograms); set shared_encoder=False '
          'or use one of them on both sides.')


def build_model(config, execution: Execution | None = None) -> MetaAlignModel:
  """Builds the model named by `config.source`, `config.target` and `config.model`.

  `execution` (default: resolved from `config.execution`, once) picks the convolution modules and
  the LSTM unroll and travels with the model to the train and evaluation steps."""
  m = config.model
  ex = execution or execution_lib.resolve(config)
  have = sides(config)
  if have not in (SIDES, SINGLE):
    raise ValueError(f'config.task.modalities={have!r}: use {SIDES} (meta-alignment) or '
                     f'{SINGLE} (single-modality few-shot learning).')
  convs = {side: ex.conv_module(side) for side in have}
  towers = {side: Tower(_encoder(side, config[side], m, convs[side], ex.rnn_unroll), m.z_dim)
            for side in have}
  shared = None
  if m.get('shared_encoder', False):
    check_shared_encoder(config)
    dtype = _dtype(m.compute_dtype)
    towers = {side: ConvStem(m.width, m.norm, dtype, convs[side]) for side in towers}
    shared = Tower(image.Conv4(m.width, m.norm, dtype, convs['source'], first=1), m.z_dim)
  ways = max(config.task.ways, config.eval.ways)
  global_head = Head(m.num_global_classes, m.head) if m.num_global_classes > 0 else None
  return MetaAlignModel(
      source=towers.get('source'), target=towers['target'], head=Head(ways, m.head),
      global_head=global_head, execution=ex, shared=shared,
      source_input=None if 'source' not in have else jax.ShapeDtypeStruct(
          tuple(config.source.input_shape), input_dtype(config.source)),
      target_input=jax.ShapeDtypeStruct(tuple(config.target.input_shape),
                                        input_dtype(config.target)))
