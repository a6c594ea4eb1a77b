"""Coalesce a burst of calls into one delayed call (used to wake the webhook inbox cron)."""

import logging
import threading

_logger = logging.getLogger(__name__)


class Coalescer:
    """``coalescer(key)`` runs ``func(key)`` on a timer thread ``delay`` seconds later; the calls
    made for the same key until then are served by that one run. So every call is followed,
    within ``delay``, by a run of ``func`` that starts after it, and a burst of N calls costs one
    run instead of N."""

    def __init__(self, func, delay, timer=threading.Timer):
        self.func, self.delay, self._timer = func, delay, timer
        self._lock = threading.Lock()
        self._pending = set()

    def __call__(self, key):
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        timer = self._timer(self.delay, self._run, [key])
        timer.daemon = True
        timer.start()

    def _run(self, key):
        with self._lock:
            self._pending.discard(key)
        try:
            self.func(key)
        except Exception:  # noqa: BLE001 - a timer thread has no caller to report to
            _logger.warning("Delayed call %s(%r) failed", getattr(self.func, "__name__", self.func), key, exc_info=True)
