"""Feeds: what puts training and evaluation batches on the devices.

- `pipeline.Pipeline`: the data package's tf.data pipeline (`meta_align_jax.data`, imported only
  when used) as the data API of `train.train` / `evaluate.evaluate`, with the inputs gathered
  where `config.data.gather` says (the default data API).
- `device_gather`: index batches gathered on the accelerator from arrays held in device memory.
- `gather_mode`: the `config.data.gather` check and its resolution (no other dependency, so the
  config checks of `validation.py` can call it).
- `exported.ExportedData`: the data API over a bundle written by `launch/export_data.py`, with
  numpy and JAX only (machines without TensorFlow).

This package imports no TensorFlow; the package itself imports none of its modules, so that
importing one (e.g. `gather_mode` from `validation.py`) pulls in nothing else.
"""
