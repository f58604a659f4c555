r"""Default experiment: image -> audio meta-alignment on the embedded `synthetic_concepts` data.

Source modality: 32x32 RGB images of attribute-composed concepts (high resource, meta-learned
with Reptile). Target modality: log-mel spectrograms of 1 s sounds rendered from the same concepts
(low resource). Weak pairs (same class, independently drawn examples) align the two embedding
spaces with the reference algorithm's prototype triplet loss. Evaluation: 5-way 1-shot target
tasks on held-out classes.

Run it (CPU, a few minutes on 2 cores):

  python launch/run.py --config configs/default.py --workdir /tmp/meta_align_default

Every experiment config imports this file and overrides fields; experiments differ by config only.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # --- What the step sees. Per-example input shapes are fixed here so that the step compiles
  # once and `init_train_state` needs no batch; the data pipeline checks it produces them.
  c.source = ml_collections.ConfigDict()
  c.source.modality = 'image'          # image | audio | speech | text
  c.source.encoder = 'conv4'           # see meta_align_jax.models.registry
  c.source.input_shape = (32, 32, 3)   # image: (H, W, C); audio/speech: (frames, mels); text: (L,)
  c.target = ml_collections.ConfigDict()
  c.target.modality = 'audio'
  c.target.encoder = 'mel_cnn'
  c.target.input_shape = (32, 40)

  # --- Few-shot tasks (source tasks for meta-training; target tasks when meta_on asks).
  c.task = ml_collections.ConfigDict()
  c.task.ways = 5
  c.task.shots = 1
  c.task.queries = 5
  c.task.tasks_per_device = 4          # meta-batch per device (vmapped)
  c.task.meta_on = ('source',)         # which modalities give meta-learning tasks
  # ('source', 'target'): meta-alignment. ('target',): plain single-modality few-shot learning:
  # one encoder (config.target), one dataset (config.data.target_*; the source one is not
  # loaded), meta_on=('target',), align.enabled=False, eval.retrieval=False; the parameter tree
  # has no 'source' group. Training tasks still draw from data.target_train_shots examples per
  # class (raise it to use them all). configs/omniglot_20way.py is an example.
  c.task.modalities = ('source', 'target')

  # --- Alignment data: P pairs per task drawn from `ways` classes.
  c.align = ml_collections.ConfigDict()
  c.align.enabled = True
  c.align.pairs = 20                   # P
  c.align.ways = 5                     # classes per alignment batch
  c.align.kind = 'weak'                # weak (same label) | strong (same instance)
  c.align.loss = 'proto_triplet'       # proto_triplet | cosine | infonce
  c.align.margin = 0.5
  c.align.temperature = 0.1
  c.align.weight = 1.0
  c.align.mode = 'gradient'          # gradient | reptile (inner loop on the alignment task, as the reference)
  c.align.inner_batch = 0              # minibatch of align.mode='reptile' inner steps; 0 = all pairs
  c.align.classes = 'train'            # which class split alignment data may use: train | train+val | all

  # --- Model.
  c.model = ml_collections.ConfigDict()
  c.model.width = 32                   # base channel width of conv encoders
  c.model.hidden = 128                 # LSTM / transformer width
  c.model.z_dim = 64                   # shared space Z
  c.model.norm = 'group'               # group | layer | task_batch | none
  c.model.compute_dtype = 'float32'    # float32 | bfloat16 (parameters stay float32)
  c.model.vocab_size = 512             # text encoders (token ids; 0 is padding)
  c.model.text_pool = 'max'            # max | mean
  c.model.text_layers = 1
  c.model.head = 'linear'              # classifier on Z: linear | relu_linear (the reference)
  c.model.num_global_classes = 0       # >0 adds a global head (supervised baselines)
  c.model.shared_encoder = False       # one Conv-4 for both modalities after per-modality stems
                                       # (ablation; conv4 / mel_cnn encoders, models/registry.py)

  # --- Meta-learner.
  c.meta = ml_collections.ConfigDict()
  c.meta.learner = 'reptile'           # reptile | fomaml | maml | protonet | supervised
  c.meta.inner_steps = 5
  c.meta.inner_lr = 0.05
  c.meta.inner_opt = 'sgd'             # sgd | adam (adam uses b1=0, b2=.999 as the reference)
  c.meta.adapt = 'all'                 # all | head | comma list of top-level param groups
  c.meta.zero_head = False             # re-zero the classifier head before each task's inner loop
  c.meta.remat = False                 # rematerialise inner steps (second-order MAML memory)
  c.meta.inner_batch = 0               # inner minibatch cycling over the task; 0 = whole task

  # --- Outer optimiser.
  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adam'
  c.optim.lr = 1e-3
  c.optim.clip_norm = 10.0             # 0 disables
  c.optim.warmup_steps = 0

  # --- How the step executes (all strategies compute the same numbers).
  c.execution = ml_collections.ConfigDict()
  c.execution.task_batching = 'auto'   # auto | vmap | map | unroll
  c.execution.inner_loop = 'auto'      # auto | scan | unroll
  c.execution.map_batch_size = 0       # lax.map batch_size (vmap inside chunks); 0 = plain map
  c.execution.parallel = 'auto'        # auto | pmap | jit  (auto: pmap when >1 local device)
  c.execution.conv = 'auto'            # auto | xla | patches | pallas: implicit GEMMs (pallas) on
                                       # GPU where tasks are vmapped (fast/execution.py, fast/pallas_conv.py)
  c.execution.rnn_unroll = 1           # LSTM time steps per loop iteration (lax.scan unroll)
  c.execution.inner_unroll = 1         # inner steps per loop iteration of a scanned inner loop
  c.execution.inner_peel = True        # first inner step outside the scan: shared weights there
  c.execution.map_encoders = ()        # sides ('source'/'target') whose encoder runs as a lax.map
                                       # over vmapped tasks (ungrouped convs; fast/mapped.py)
  c.execution.deterministic = False    # bit-reproducible GPU runs: launch/run.py sets XLA_FLAGS=
                                       # --xla_gpu_deterministic_ops=true (deterministic kernels,
                                       # no autotuning) before JAX starts; slower on GPU
                                       # (meta_align_jax/determinism.py)

  # --- Training loop.
  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 400
  c.train.log_every = 50
  c.train.checkpoint_every = 200
  c.train.eval_every = 200             # meta-validation
  c.train.keep_checkpoints = 2
  c.train.val_episodes = 100
  # Which checkpoint is evaluated ('best' by this criterion; meta_align_jax/selection.py):
  #   'target_val'  target few-shot accuracy on meta-val classes (reads target labels: the oracle's
  #                 and the pre-protocol runs' criterion; not allowed with lowres.enabled unless
  #                 lowres.oracle)
  #   'source_val'  source few-shot accuracy on meta-val classes (no target label)
  #   'align_val'   InfoNCE on unlabelled strong pairs of meta-val classes (no target label)
  #   'final'       the last step (a fixed step count)
  c.train.select = 'target_val'
  c.train.patience = 0                 # >0: stop after this many validations without a better
                                       # score (the oracle trains until meta-val plateaus)

  # --- Evaluation on target few-shot tasks of held-out classes.
  c.eval = ml_collections.ConfigDict()
  c.eval.split = 'test'
  c.eval.num_episodes = 600
  c.eval.ways = 5
  c.eval.shots = 1
  c.eval.queries = 15
  c.eval.method = 'finetune'           # finetune | proto
  c.eval.inner_steps = 10
  c.eval.inner_lr = 0.05
  c.eval.adapt = 'all'                 # parameter groups adapted on the target support
  c.eval.batch_episodes = 5            # episodes per compiled call (CPU compile time grows with it)
  c.eval.retrieval = True
  c.eval.report_both = False           # also score the other protocol (proto <-> finetune):
                                       # eval_results.json gets accuracy_proto_* and
                                       # accuracy_finetune_*; eval.method stays the primary one,
                                       # fixed in the config before the test run

  # --- Self-supervised target loss (meta_align_jax/ssl.py): InfoNCE between two augmentations
  # of the alignment batch's unlabelled target clips, added with this weight.
  c.ssl = ml_collections.ConfigDict()
  c.ssl.enabled = False
  c.ssl.weight = 1.0
  c.ssl.temperature = 0.1
  c.ssl.mask_frac = 0.2                # masked block of the first input axis (time / rows)
  c.ssl.noise_std = 0.1                # Gaussian noise, in units of the clip's std

  # --- Low-resource protocol (meta_align_jax/lowres.py); off: the fields above act as before.
  c.lowres = ml_collections.ConfigDict()
  c.lowres.enabled = False
  c.lowres.labelled_classes = 5        # the labelled target set: classes x shots, the same for
  c.lowres.labelled_shots = 5          # every method (sets data.target_train_classes/_shots)
  c.lowres.pairs = 'strong'            # strong: instance pairs over ALL meta-train classes, drawn
                                       # by source class, target labels withheld | weak: same-label
                                       # pairs from the labelled set (labels) | none
  c.lowres.pair_instances = 0          # strong pairs per meta-train class (0: every instance)
  c.lowres.pseudo_labels = False       # target tasks on clips labelled by their strong pair's
                                       # source class + the labelled set (pseudo-label baseline)
  c.lowres.oracle = False              # the oracle alone may select on target meta-val labels

  # --- Augmentation (meta_align_jax/augment.py; data/augment.py for rotation classes).
  c.augment = ml_collections.ConfigDict()
  # Character datasets (square images): every class also appears rotated by 90/180/270 degrees,
  # each rotation a class of its own (the usual Omniglot protocol). Rotations are added to every
  # split after the class-disjoint split of the original classes, so the four rotations of a
  # character always share a split.
  c.augment.rotation_classes = False
  # Light augmentation of the training episodes' inputs (support and query of the meta-learning
  # tasks; not alignment pairs, not evaluation), drawn inside the train step from
  # fold_in(key(seed + 1), step): the augmented batch of step s depends only on (seed, s), for
  # host and device-gathered batches alike, so resuming is exact.
  c.augment.shift = 0                  # images: random shift of up to n pixels (H and W, zero
                                       # fill); spectrograms: of up to n frames in time
  c.augment.flip = False               # images: random horizontal flips
  c.augment.gain = 0.0                 # spectrograms: random offset in [-gain, gain] added to the
                                       # log-mel values (a gain, in the features' log units)
  c.augment.mask = 0                   # spectrograms: one time and one mel band of up to n rows
                                       # set to the example's minimum (SpecAugment-style)

  # --- Data.
  c.data = ml_collections.ConfigDict()
  c.data.source_dataset = 'synthetic_concepts'
  c.data.source_feature = 'image'
  c.data.target_dataset = 'synthetic_concepts'
  c.data.target_feature = 'audio'
  c.data.data_dir = ''                 # TFDS data dir; '' = ~/tensorflow_datasets
  c.data.manual_dir = ''               # local copy of a dataset's raw files, when a builder reads one
  c.data.split_fractions = (0.6, 0.2, 0.2)   # class-disjoint meta-train / meta-val / meta-test
  c.data.target_train_shots = 5        # examples per class of target modality seen in training
  c.data.target_train_classes = 0      # meta-train classes with labelled target data (seeded
                                       # subset, for target tasks and alignment); 0 = all
  c.data.target_noise = 0.0            # label-noise rate on target support labels
  c.data.align_noise = 0.0             # label-noise rate on alignment pairs
  c.data.noise_kind = 'symmetric'      # symmetric | pairflip
  c.data.prefetch = 2
  # Where training inputs are gathered (meta_align_jax/feeds/): 'host' (tf.data),
  # 'device' (the host sends indices; the examples stay in device memory) or 'auto' (device on
  # an accelerator when source + target arrays take <= device_gather_max_gib GiB).
  c.data.gather = 'auto'
  c.data.device_gather_max_gib = 4.0
  return c
