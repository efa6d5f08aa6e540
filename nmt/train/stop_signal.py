"""Stopping a run from outside: SIGINT/SIGTERM end training at an update all processes agree on."""

from __future__ import annotations

import signal


class StopSignal:
    """SIGINT/SIGTERM ask training to stop after the current update, with a checkpoint (pre-emption).

    `received` is this process's own signal; `agreed` is set on every process at the same update, from
    the flag that `nmt.train.update.update` all-reduces, and only it may end the loop (a process that left on
    its own signal would leave the others waiting in the next all-reduce).
    """

    def __init__(self):
        self.received, self.agreed = None, None
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
