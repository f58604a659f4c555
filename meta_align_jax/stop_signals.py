"""SIGTERM/SIGINT as a request to stop at the next step boundary (used by the training loop)."""

from __future__ import annotations

import signal
import threading

from absl import logging


class StopOnSignal:
  """Turns SIGTERM/SIGINT into a request the loop honours at the next step boundary.

  A second SIGINT raises KeyboardInterrupt at once. Handlers are installed only in the main
  thread (Python allows no other) and the previous ones are put back on exit.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    logging.warning('Received %s: saving a checkpoint after this step, then stopping.',
                    signal.Signals(signum).name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    return False
