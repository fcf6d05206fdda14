"""Progress of long work: a tqdm bar on a terminal, plain lines in a log.

Plugins show their progress through `progress_bar` too, so that `--quiet`, torchrun's ranks
and a redirected stderr are handled alike everywhere.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, Optional

from tqdm.auto import tqdm

from unlearnkit.engine import distributed


def progress_bar(
    iterable: Optional[Iterable] = None,
    *,
    desc: str,
    total: Optional[int] = None,
    unit: str = "it",
    enabled: bool = True,
    each: bool = False,
    initial: int = 0,
    leave: bool = False,
) -> Any:
    """A progress bar over `iterable`, or over `total` steps advanced with `.update(n)`.

    On a terminal it is a tqdm bar. When stderr is not a terminal (a log file, CI) there is no
    bar: one line `desc: n/total units in X s` is written when the work finishes (and with `each`,
    one line per step, naming the step given to `.set_postfix_str`). Nothing is shown when
    `enabled` is false or on torchrun ranks other than 0. Supports iteration, `update`,
    `set_postfix_str`, `close` and `with`; `initial` steps count as done already.
    """
    shown = enabled and distributed.is_main()
    if shown and not _is_terminal(sys.stderr):
        return LineProgress(iterable, desc=desc, total=total, unit=unit, each=each, initial=initial)
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not shown, initial=initial, leave=leave)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class LineProgress:
    """`progress_bar` where stderr is not a terminal: whole lines, no escape codes."""

    def __init__(self, iterable: Optional[Iterable], *, desc: str, total: Optional[int], unit: str = "it",
                 each: bool = False, initial: int = 0):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.desc, self.total, self.each = iterable, desc, total, each
        self.unit_name = "" if unit == "it" else unit
        self.unit = "" if unit == "it" else f" {unit}s"
        self.n, self.postfix, self.closed = initial, "", False
        self.in_step = False  # a step was handed out and the loop left before it finished (a stop rule's return)
        self.start = time.perf_counter()

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                self.in_step = True
                yield item
                self.in_step = False
                self.update(1)
        finally:  # also when the loop stops early (a stop rule's break, an error): the line says where
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.close()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.each:
            self._write(f"{self.desc} {self._count()}: {self.postfix}" if self.postfix else f"{self.desc} {self._count()}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        what = f" ({self.postfix})" if self.postfix and not self.each else ""
        done = f"{self._count()}{self.unit}"
        if self.in_step:  # left during step n + 1: say where, not "n/total"
            done = f"stopped in {self.unit_name or 'step'} {self.n + 1}" + (f"/{self.total}" if self.total is not None else "")
        self._write(f"{self.desc}: {done}{what} in {time.perf_counter() - self.start:.1f} s")

    def _count(self) -> str:
        return f"{self.n}/{self.total}" if self.total is not None else str(self.n)

    @staticmethod
    def _write(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
