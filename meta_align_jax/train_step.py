"""The meta-alignment step: `TrainState`, `init_train_state`, `make_train_step`, `make_eval_step`.

One step, for each task of the batch: the meta-gradient of the configured meta-learner on the
source (and/or target) few-shot task, plus `config.align.weight` times the alignment gradient on
the task's pairs. Task gradients are averaged over the tasks of a device (vmap, lax.map or an
unrolled loop: `config.execution.task_batching`, fast/task_batching.py), then over devices (`lax.pmean` under pmap), and
applied by the outer optax optimiser. The step is written for one task and batched over tasks;
all execution strategies compute the same numbers (tests/test_train_step.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_align_jax import augment, losses, parallel, ssl, validation
from meta_align_jax.fast import execution as execution_lib
from meta_align_jax.fast.execution import Execution
from meta_align_jax.fast.task_batching import over_episodes, over_tasks
from meta_align_jax.meta import inner, learners
from meta_align_jax.models.registry import MetaAlignModel, sides
from meta_align_jax.parallel import replicate, unreplicate  # noqa: F401  (public here too)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def make_outer_optimizer(config) -> optax.GradientTransformation:
  o = config.optim
  lr = o.lr
  if o.warmup_steps:
    lr = optax.linear_schedule(0.0, o.lr, o.warmup_steps)
  opt = {'adam': lambda: optax.adam(lr), 'adamw': lambda: optax.adamw(lr),
         'sgd': lambda: optax.sgd(lr), 'momentum': lambda: optax.sgd(lr, momentum=0.9)}[o.name]()
  return optax.chain(optax.clip_by_global_norm(o.clip_norm), opt) if o.clip_norm else opt


def init_train_state(config, model: MetaAlignModel, rng) -> TrainState:
  """Fresh parameters and optimiser state (unreplicated; see `replicate` for pmap)."""
  validation.check_config(config)
  params = model.init(rng)
  return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                    opt_state=make_outer_optimizer(config).init(params))


# --------------------------------------------------------------------------- the step


def _inner_config(config, side: str, params_groups, ex: Execution, *, eval_mode=False):
  m = config.meta
  # A scanned inner loop runs `execution.inner_unroll` steps per loop iteration.
  unroll = True if ex.unrolled else ex.inner_unroll
  peel, fast = ex.inner_peel, ex.fast_inner
  if eval_mode:
    e = config.eval
    return learners.InnerConfig(
        steps=e.inner_steps, optimizer=inner.make_inner_optimizer(m.inner_opt, e.inner_lr),
        keys=inner.resolve_adapt(e.adapt, side, params_groups, 'config.eval.adapt'),
        unroll=unroll, remat=False, zero_head=m.zero_head, fast=fast, peel_first=peel)
  return learners.InnerConfig(
      steps=m.inner_steps, optimizer=inner.make_inner_optimizer(m.inner_opt, m.inner_lr),
      keys=inner.resolve_adapt(m.adapt, side, params_groups), unroll=unroll, remat=m.remat,
      zero_head=m.zero_head, batch_size=m.inner_batch, fast=fast, peel_first=peel)


def _param_groups(config) -> tuple[str, ...]:
  groups = sides(config) + (('shared',) if config.model.get('shared_encoder') else ())
  return groups + ('head',) + (('global_head',) if config.model.num_global_classes > 0 else ())


def task_gradient(config, model, params, task, rng, *, execution: Execution | None = None):
  """Meta-gradient plus weighted alignment gradient of one task, and its metrics."""
  ex = execution or model.execution
  meta_on = tuple(config.task.meta_on)
  groups = _param_groups(config)
  grads = jax.tree.map(jnp.zeros_like, params)
  metrics = {}
  for side in meta_on:
    g, m = learners.meta_gradient(config.meta.learner, model, side, config.task.ways,
                                  _inner_config(config, side, groups, ex), params, task[side])
    grads = jax.tree.map(lambda a, b: a + b / len(meta_on), grads, g)
    prefix = '' if side == 'source' else 'target_'
    metrics.update({prefix + k: v for k, v in m.items()})
  metrics['meta_loss'] = sum(metrics[('' if s == 'source' else 'target_') + 'meta_loss']
                             for s in meta_on) / len(meta_on)
  if config.align.enabled and not config.align.weight:
    # Alignment weighted 0 (e.g. the SSL baseline, which only needs the pair batch): the loss is
    # logged, and no gradient that would be multiplied by 0 is computed.
    metrics['align_loss'] = learners.alignment_loss(model, config.align, params, task['align'])
    metrics['loss'] = metrics['meta_loss']
  elif config.align.enabled:
    align_inner = _inner_config(config, 'source', groups, ex)
    align_inner = dataclasses.replace(align_inner, keys=tuple(g for g in groups if g in (
        'source', 'target', 'shared')), zero_head=False,
                                      batch_size=config.align.inner_batch)
    g, m = learners.alignment_gradient(model, config.align, align_inner, params, task['align'])
    grads = jax.tree.map(lambda a, b: a + config.align.weight * b, grads, g)
    metrics.update(m)
    metrics['loss'] = metrics['meta_loss'] + config.align.weight * metrics['align_loss']
  else:
    metrics['loss'] = metrics['meta_loss']
  if ssl.enabled(config):   # self-supervised target loss on the unlabelled clips (ssl.py)
    g, m = ssl.ssl_gradient(model, config.ssl, params, task['align'], rng)
    grads = jax.tree.map(lambda a, b: a + config.ssl.weight * b, grads, g)
    metrics.update(m)
    metrics['loss'] = metrics['loss'] + config.ssl.weight * m['ssl_loss']
  return grads, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def train_step(state: TrainState, batch, rng, *, config, model, tx, execution: Execution):
  """One meta-iteration on `batch` (leading axis: tasks of this device)."""
  pmapped = execution.pmapped
  device = jax.lax.axis_index(parallel.AXIS) if pmapped else None
  augment_key = augment.step_key(rng, state.step, device)   # (seed, step, device) only
  rng = jax.random.fold_in(rng, state.step)
  if pmapped:
    rng = jax.random.fold_in(rng, device)
  tasks = {k: batch[k] for k in tuple(config.task.meta_on) + (('align',) if config.align.enabled else ())}
  tasks = augment.augment_tasks(config, tasks, augment_key)   # identity unless config.augment
  num_tasks = jax.tree.leaves(tasks)[0].shape[0]
  rngs = jax.random.split(rng, num_tasks)
  fn = functools.partial(task_gradient, config, model, execution=execution)
  grads, metrics = over_tasks(fn, state.params, tasks, rngs, execution.task_batching,
                              execution.map_batch_size)
  if pmapped:
    grads, metrics = jax.lax.pmean((grads, metrics), parallel.AXIS)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics['grad_norm'] = optax.global_norm(grads)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


class _Checked:
  """Calls a compiled step after checking each new batch signature against the config.

  The check runs on the host before the first compile of a signature and costs nothing later.
  """

  def __init__(self, compiled, config, pmapped):
    self._compiled, self._config, self._pmapped = compiled, config, pmapped
    self._seen: set = set()
    self.__wrapped__ = compiled

  def __call__(self, state, batch, rng):
    sig = (jax.tree.structure(batch), tuple(tuple(x.shape) for x in jax.tree.leaves(batch)))
    if sig not in self._seen:
      validation.check_batch(self._config, batch)
      self._seen.add(sig)
    state, metrics = self._compiled(state, batch, rng)
    if self._pmapped:
      metrics = unreplicate(metrics)   # pmean'd: identical on every device
    return state, metrics


def make_train_step(config, model: MetaAlignModel, *, donate: bool | None = None):
  """Returns `train_step(state, batch, rng) -> (state, metrics)`, compiled.

  With pmap (`config.execution.parallel`, default: more than one local device) the state must be
  replicated (`replicate(state)`) and the batch carries a leading device axis; `rng` is one key,
  folded with the step and the device index inside. `metrics` is a dict of scalars averaged over
  tasks and devices: `loss`, `meta_loss`, `align_loss`, `grad_norm`, and per learner
  `query_acc`, `inner_loss_first`, `inner_loss_last`.
  """
  validation.check_config(config)
  ex = execution_lib.of(config, model)
  pmapped = ex.pmapped
  if donate is None:
    donate = ex.backend != 'cpu'   # XLA:CPU cannot reuse donated buffers
  fn = functools.partial(train_step, config=config, model=model, tx=make_outer_optimizer(config),
                         execution=ex)
  donate_argnums = (0,) if donate else ()
  if pmapped:
    compiled = jax.pmap(fn, axis_name=parallel.AXIS, in_axes=(0, 0, None),
                        donate_argnums=donate_argnums)
  else:
    compiled = jax.jit(fn, donate_argnums=donate_argnums)
  return _Checked(compiled, config, pmapped)


# --------------------------------------------------------------------------- evaluation


def episode_metrics(config, model, params, episode, *, side: str, ways: int,
                    execution: Execution | None = None):
  """Adapts on one episode's support (fine-tuning or prototypes) and scores its queries.

  Unchecked: `make_eval_step` validates the episodes against `ways` before calling this."""
  support, query = episode['support'], episode['query']
  if config.eval.method == 'proto':
    logits = losses.proto_logits(model.embed(params, support['x'], side), support['y'],
                                 model.embed(params, query['x'], side), ways)
  else:
    inner_cfg = _inner_config(config, side, _param_groups(config), execution or model.execution,
                              eval_mode=True)
    fast, _ = inner_cfg.run(learners.classifier_loss(model, side, ways), params, support)
    logits = model.logits(fast, model.embed(fast, query['x'], side))[:, :ways]
  return {'accuracy': losses.accuracy(logits, query['y']),
          'loss': losses.cross_entropy(logits, query['y'])}


def _head_classes(model, params) -> int:
  z = jax.ShapeDtypeStruct((1, model.head_in_dim), jnp.float32)
  return int(jax.eval_shape(lambda p, z: model.logits(p, z), params, z).shape[-1])


class _CheckedEval:
  """Calls the jitted evaluation step after checking the episodes against the ways they are
  scored with (before the first compile of a signature; label values of host arrays at every
  call, of device arrays at the first call of a signature) and the head against those ways."""

  def __init__(self, jitted, config, model, ways, ways_field):
    self._jitted, self._config, self._model = jitted, config, model
    self._ways, self._field = ways, ways_field
    self._seen: set = set()
    self.__wrapped__ = jitted

  def check(self, params, episodes):
    sig = (jax.tree.structure(episodes), tuple(tuple(x.shape) for x in jax.tree.leaves(episodes)))
    first = sig not in self._seen
    if first:
      validation.check_eval_ways(self._config, self._ways, _head_classes(self._model, params),
                                 self._field)
    host = all(isinstance(episodes[p]['y'], np.ndarray) for p in ('support', 'query')
               if isinstance(episodes, dict) and p in episodes and 'y' in episodes[p])
    noisy = float(self._config.get('data', {}).get('target_noise', 0.0) or 0.0) > 0
    validation.check_episodes(episodes, ways=self._ways, ways_field=self._field,
                              values=first or host, noisy=noisy)
    self._seen.add(sig)

  def __call__(self, params, episodes):
    self.check(params, episodes)
    return self._jitted(params, episodes)

  def lower(self, params, episodes):
    self.check(params, episodes)
    return self._jitted.lower(params, episodes)


def make_eval_step(config, model: MetaAlignModel, *, side: str = 'target',
                   ways: int | None = None):
  """Returns `eval_step(params, episodes) -> {'accuracy': [E], 'loss': [E]}`, jitted.

  `episodes` is `{'support': {'x', 'y'}, 'query': {'x', 'y'}}` with a leading episode axis, in
  `side`'s modality, labels episode-local `0..ways-1`; `ways` defaults to `config.eval.ways`
  (pass the episodes' number of classes to score other episodes). The support is adapted on per
  `config.eval` (method, inner steps, lr, adapted groups) and the queries scored. Before
  compiling, the episodes are checked against `ways` (labels, classes present) and, for
  fine-tuning, the head against `ways`: a mismatch raises a ValueError, never a wrong score.
  Parameters are not replicated (one device).
  """
  validation.check_config(config)
  field = 'config.eval.ways' if ways is None else "make_eval_step's ways"
  ways = config.eval.ways if ways is None else ways
  ex = execution_lib.of(config, model)
  fn = functools.partial(episode_metrics, config, model, side=side, ways=ways, execution=ex)

  def eval_step(params, episodes):
    return over_episodes(lambda ep: fn(params, ep), episodes, ex.task_batching,
                         ex.map_batch_size)

  return _CheckedEval(jax.jit(eval_step), config, model, ways, field)
