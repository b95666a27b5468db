"""Progress of long work: a tqdm bar on a terminal, a quiet line every few seconds in a log.

When stderr is not a terminal (a log file, a CI job, a Hydra multirun redirected to a file)
tqdm's redraws would fill the log; :func:`progress_bar` then prints at most one plain line
every :data:`LOG_INTERVAL` seconds (and the last one), with the same ``set_postfix``/``close``
interface.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

LOG_INTERVAL = 10.0  # s between lines in a log


class LogProgress:
    """Iterate ``iterable``, printing ``desc: i/n (t s) postfix`` lines to ``stream`` at most
    every ``interval`` seconds, and once at the end."""

    def __init__(self, iterable: Iterable[Any], desc: str, interval: float = LOG_INTERVAL,
                 stream: Any = None) -> None:
        self.iterable, self.desc, self.interval = iterable, desc, interval
        self.stream = sys.stderr if stream is None else stream
        self.total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        self.postfix, self.count, self.start, self.closed = "", 0, time.monotonic(), False
        self.last = self.start

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.count += 1
            now = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                self._line()
        self.close()  # the last state, also when the caller never closes

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self) -> None:
        total = f"/{self.total}" if self.total is not None else ""
        elapsed = time.monotonic() - self.start
        print(f"{self.desc}: {self.count}{total} ({elapsed:.0f} s) {self.postfix}".rstrip(),
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.count and not self.closed:
            self._line()
        self.closed = True


def progress_bar(iterable: Iterable[Any], desc: str, enabled: bool = True) -> Any:
    """A tqdm bar on a terminal, :class:`LogProgress` otherwise; silent when not ``enabled``."""
    if enabled and not sys.stderr.isatty():
        return LogProgress(iterable, desc)
    return tqdm(iterable, desc=desc, disable=not enabled)
