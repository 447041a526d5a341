"""A small device-prefetch buffer: a background thread runs ahead N batches.

    batches = prefetch(source.train_batches(start_step), size=2,
                       put=lambda b: parallel.shard_batch(b, mesh))
    for step, batch in zip(range(start_step, num_steps), batches): ...

The thread gathers the next host batches and puts them on the device
(`put`, default jax.device_put) while the current step runs; numpy gathers and
the host-to-device copies release the GIL, so they overlap with the step.
"""

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Optional

_END = object()


class Prefetcher:
  """Iterator over put(x) for x in `iterable`, computed `size` items ahead.

  Exceptions of the producer are raised in the consumer at the point where
  the failing item would have been. Call close() (or use it as a context
  manager) to stop the thread before the iterable ends; it is a daemon thread,
  so a forgotten one never blocks interpreter exit.
  """

  def __init__(self, iterable: Iterable[Any], size: int = 2,
               put: Optional[Callable[[Any], Any]] = None):
    if size < 1:
      raise ValueError(f"prefetch size must be >= 1, got {size}.")
    if put is None:
      import jax  # pylint: disable=g-import-not-at-top
      put = jax.device_put
    self._iterator = iter(iterable)
    self._put = put
    self._queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._produce, daemon=True,
                                    name="wae_jax-prefetch")
    self._thread.start()

  def _offer(self, item) -> bool:
    """Blocks until `item` is queued; False if close() came first."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _produce(self) -> None:
    try:
      for item in self._iterator:
        if not self._offer((self._put(item), None)):
          return
    except BaseException as e:  # pylint: disable=broad-except
      self._offer((None, e))
      return
    self._offer((_END, None))

  def __iter__(self) -> Iterator[Any]:
    return self

  def __next__(self) -> Any:
    if self._stop.is_set():
      raise StopIteration
    item, error = self._queue.get()
    if error is not None:
      self._stop.set()
      raise error
    if item is _END:
      self._stop.set()
      raise StopIteration
    return item

  def close(self) -> None:
    """Stops the producer thread and drops what it had prefetched."""
    self._stop.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._thread.join(timeout=5.0)

  def __enter__(self) -> "Prefetcher":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def prefetch(iterable: Iterable[Any], size: int = 2,
             put: Optional[Callable[[Any], Any]] = None) -> Prefetcher:
  """`Prefetcher(iterable, size, put)`: put(x) computed `size` items ahead."""
  return Prefetcher(iterable, size=size, put=put)
