"""Coalesce a burst of calls into few runs (used to wake the webhook inbox cron)."""

import logging
import threading

_logger = logging.getLogger(__name__)


class Coalescer:
    """``coalescer(key, items)`` runs ``func(key, items)`` on a thread of its own, at once when no
    run of that key happened in the last ``delay`` seconds; otherwise the call waits for the end
    of that window, where one run serves every call made meanwhile, with the union of their
    items. So every call is followed by a run of ``func`` that starts after it and sees its
    items, a lone call is served at once, and a burst costs one run per ``delay`` seconds
    instead of one per call."""

    def __init__(self, func, delay, timer=threading.Timer):
        self.func, self.delay, self._timer = func, delay, timer
        self._lock = threading.Lock()
        # key -> the items of the calls waiting for the end of its window (None: no call waits);
        # a key is absent when its window is over
        self._waiting = {}

    def __call__(self, key, items=()):
        with self._lock:
            if key in self._waiting:
                waiting = self._waiting[key]
                self._waiting[key] = (waiting or set()) | set(items)
                return
            self._waiting[key] = None
        self._start(0, self._serve, key, frozenset(items))

    def _start(self, delay, method, *args):
        timer = self._timer(delay, method, args)
        timer.daemon = True
        timer.start()

    def _serve(self, key, items):
        try:
            self.func(key, items)
        except Exception:  # noqa: BLE001 - a timer thread has no caller to report to
            _logger.warning("Delayed call %s(%r) failed", getattr(self.func, "__name__", self.func), key, exc_info=True)
        finally:
            self._start(self.delay, self._end_window, key)

    def _end_window(self, key):
        with self._lock:
            waiting = self._waiting.pop(key, None)
            if waiting is None:
                return
            self._waiting[key] = None  # a new window, opened by the run that serves them
        self._serve(key, frozenset(waiting))
