"""Coalesce a burst of calls into one delayed call (used to wake the webhook inbox cron)."""

import logging
import threading

_logger = logging.getLogger(__name__)


class Coalescer:
    """``coalescer(key, items)`` runs ``func(key, all_items)`` on a timer thread ``delay`` seconds
    later, ``all_items`` being the union of the ``items`` of the calls made for the same key until
    then, all served by that one run. So every call is followed, within ``delay``, by a run of
    ``func`` that starts after it and sees its items, and a burst of N calls costs one run
    instead of N."""

    def __init__(self, func, delay, timer=threading.Timer):
        self.func, self.delay, self._timer = func, delay, timer
        self._lock = threading.Lock()
        self._pending = {}  # key -> set of the items of its calls since the timer started

    def __call__(self, key, items=()):
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                pending.update(items)
                return
            self._pending[key] = set(items)
        timer = self._timer(self.delay, self._run, [key])
        timer.daemon = True
        timer.start()

    def _run(self, key):
        with self._lock:
            items = frozenset(self._pending.pop(key, ()))
        try:
            self.func(key, items)
        except Exception:  # noqa: BLE001 - a timer thread has no caller to report to
            _logger.warning("Delayed call %s(%r) failed", getattr(self.func, "__name__", self.func), key, exc_info=True)
