"""Meta-learners as pure functions: one few-shot task in, a meta-gradient for it out.

Each learner is a function `(model, side, ways, inner_cfg, params, task) -> (grads, metrics)`
registered with `@register_learner(name)` (`config.meta.learner`; `adapts=True` for learners
that need at least one inner step), where where `task` is
`{'support': {'x', 'y'}, 'query': {'x', 'y'}}` of one modality with episode-local labels, and
`grads` has the structure of `params` (the outer optimiser averages them over tasks and devices):

- `reptile` (the paper's reference): adapt on the whole task (support and query) for K inner
  steps; meta-gradient = theta - theta' (Nichol et al. 2018).
- `fomaml`: adapt on the support; meta-gradient = grad of the query loss at theta'.
- `maml`: adapt on the support; meta-gradient = grad of the query loss at theta'(theta), through
  the inner loop (second order; `config.meta.remat` to trade compute for memory).
- `protonet`: no inner loop; query logits are negative distances to support prototypes in Z.
- `supervised`: no inner loop; a global classifier (`params['global_head']`) on global labels
  `label` of support and query (a baseline without meta-learning).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from meta_align_jax import losses
from meta_align_jax.fast import inner as fast_inner
from meta_align_jax.meta import inner
from meta_align_jax.registry import Registry

LEARNERS = Registry('meta-learner', 'config.meta.learner')


def register_learner(name: str, *, adapts: bool = False, overwrite: bool = False):
  """Decorator: registers `fn(model, side, ways, inner_cfg, params, task) -> (grads, metrics)`
  as `config.meta.learner=name`; `adapts`: it runs the inner loop (needs inner_steps >= 1)."""
  def add(fn):
    fn.adapts = adapts
    return LEARNERS.register(name, fn, overwrite=overwrite)
  return add


def adapts(name: str) -> bool:
  return bool(getattr(LEARNERS.get(name), 'adapts', False))


@dataclasses.dataclass(frozen=True)
class InnerConfig:
  steps: int
  optimizer: object
  keys: tuple[str, ...]
  unroll: bool | int     # True: fully unrolled; k: k steps per scan iteration
  remat: bool
  zero_head: bool
  batch_size: int = 0
  # The fast inner loop (fast/inner.py: same numbers), chosen by the step's `Execution`.
  fast: bool = False
  peel_first: bool = True  # with `fast`: the first inner step outside the scanned loop

  def run(self, loss_fn, params, batch):
    kw = dict(steps=self.steps, optimizer=self.optimizer, keys=self.keys, unroll=self.unroll,
              remat=self.remat, zero_head=self.zero_head, batch_size=self.batch_size)
    if self.fast:
      return fast_inner.adapt(loss_fn, params, batch, peel_first=self.peel_first, **kw)
    return inner.adapt(loss_fn, params, batch, **kw)


def classifier_loss(model, side: str, ways: int) -> Callable:
  """CE of head(embed(x)) restricted to the first `ways` logits; returns (loss, logits) via aux."""
  def loss_fn(params, batch):
    logits = model.logits(params, model.embed(params, batch['x'], side))[:, :ways]
    return losses.cross_entropy(logits, batch['y'])
  return loss_fn


def _query_metrics(model, side, ways, params, query):
  logits = model.logits(params, model.embed(params, query['x'], side))[:, :ways]
  return losses.cross_entropy(logits, query['y']), losses.accuracy(logits, query['y'])


def _inner_metrics(inner_losses):
  if inner_losses.shape[0] == 0:
    return {}
  return {'inner_loss_first': inner_losses[0], 'inner_loss_last': inner_losses[-1]}


def _concat(a: dict, b: dict) -> dict:
  return jax.tree.map(lambda u, v: jnp.concatenate([u, v], axis=0), a, b)


def meta_gradient(learner: str, model, side: str, ways: int, inner_cfg: InnerConfig,
                  params: dict, task: dict):
  """The meta-gradient of one task for the registered `learner`; see the module docstring."""
  return LEARNERS.get(learner)(model, side, ways, inner_cfg, params, task)


@register_learner('reptile', adapts=True)
def reptile(model, side, ways, inner_cfg, params, task):
  loss_fn = classifier_loss(model, side, ways)
  support, query = task['support'], task['query']
  data = _concat({'x': support['x'], 'y': support['y']}, {'x': query['x'], 'y': query['y']})
  fast, inner_losses = inner_cfg.run(loss_fn, params, data)
  grads = jax.tree.map(lambda p, q: p - q, params, fast)
  return grads, {'meta_loss': inner_losses[-1] if inner_losses.shape[0] else loss_fn(params, data),
                 **_inner_metrics(inner_losses)}


@register_learner('fomaml', adapts=True)
def fomaml(model, side, ways, inner_cfg, params, task):
  loss_fn = classifier_loss(model, side, ways)
  fast, inner_losses = inner_cfg.run(loss_fn, jax.lax.stop_gradient(params), task['support'])
  (loss, acc), grads = _value_and_grad_with_acc(model, side, ways, fast, task['query'])
  return grads, {'meta_loss': loss, 'query_acc': acc, **_inner_metrics(inner_losses)}


@register_learner('maml', adapts=True)
def maml(model, side, ways, inner_cfg, params, task):
  loss_fn = classifier_loss(model, side, ways)
  def outer(p):
    fast, inner_losses = inner_cfg.run(loss_fn, p, task['support'])
    loss, acc = _query_metrics(model, side, ways, fast, task['query'])
    return loss, (acc, inner_losses)
  (loss, (acc, inner_losses)), grads = jax.value_and_grad(outer, has_aux=True)(params)
  return grads, {'meta_loss': loss, 'query_acc': acc, **_inner_metrics(inner_losses)}


@register_learner('protonet')
def protonet(model, side, ways, inner_cfg, params, task):
  del inner_cfg
  support, query = task['support'], task['query']
  def proto(p):
    logits = losses.proto_logits(model.embed(p, support['x'], side), support['y'],
                                 model.embed(p, query['x'], side), ways)
    return losses.cross_entropy(logits, query['y']), losses.accuracy(logits, query['y'])
  (loss, acc), grads = jax.value_and_grad(proto, has_aux=True)(params)
  return grads, {'meta_loss': loss, 'query_acc': acc}


@register_learner('supervised')
def supervised(model, side, ways, inner_cfg, params, task):
  del ways, inner_cfg
  if 'global_head' not in params:
    raise ValueError("config.meta.learner='supervised' needs config.model.num_global_classes > 0 "
                     '(the number of meta-train classes).')
  support, query = task['support'], task['query']
  data = _concat({'x': support['x'], 'y': support['label']}, {'x': query['x'], 'y': query['label']})
  def sup(p):
    logits = model.logits(p, model.embed(p, data['x'], side), head='global_head')
    return losses.cross_entropy(logits, data['y']), losses.accuracy(logits, data['y'])
  (loss, acc), grads = jax.value_and_grad(sup, has_aux=True)(params)
  return grads, {'meta_loss': loss, 'query_acc': acc}


def _value_and_grad_with_acc(model, side, ways, params, query):
  return jax.value_and_grad(lambda p: _query_metrics(model, side, ways, p, query),
                            has_aux=True)(params)


def alignment_loss(model, align_cfg, params: dict, batch: dict):
  """The alignment loss of one task's pairs (`losses.alignment_loss` on both towers' Z)."""
  zs = model.embed(params, batch['source_x'], 'source')
  zt = model.embed(params, batch['target_x'], 'target')
  return losses.alignment_loss(align_cfg.loss, zs, zt, batch['y'], num_classes=align_cfg.ways,
                               margin=align_cfg.margin, temperature=align_cfg.temperature)


def alignment_gradient(model, align_cfg, inner_cfg: InnerConfig | None, params: dict, align: dict):
  """Gradient (or Reptile difference) of the alignment loss on one task's pairs."""
  loss_fn = functools.partial(alignment_loss, model, align_cfg)

  if align_cfg.mode == 'reptile':
    fast, inner_losses = inner_cfg.run(loss_fn, params, align)
    grads = jax.tree.map(lambda p, q: p - q, params, fast)
    return grads, {'align_loss': inner_losses[0] if inner_losses.shape[0] else loss_fn(params, align)}
  if align_cfg.mode == 'gradient':
    loss, grads = jax.value_and_grad(loss_fn)(params, align)
    return grads, {'align_loss': loss}
  raise ValueError(f"config.align.mode={align_cfg.mode!r}: use 'gradient' or 'reptile'.")
