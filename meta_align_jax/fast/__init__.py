"""Speed machinery: the same numbers as the plain algorithm, faster.

`execution.py` resolves `config.execution` once into an `Execution` that the model and the steps
carry; the rest are the fast paths it hands out: Pallas and patch convolutions, pooling and LSTM
backward passes, the peeled / cast-carrying inner loop, mapped encoders, task batching.
"""
