"""The coalescing timer that wakes the inbox lanes: every call is followed by one run of the
function that starts after it and sees the call's items; a lone call runs at once, a burst costs
one run per window."""

from visionmetrics_whatsapp.tools.coalesce import Coalescer


class FakeTimer:
    """threading.Timer that the test fires by hand."""

    started = []

    def __init__(self, delay, func, args):
        self.delay, self.func, self.args, self.daemon = delay, func, args, False

    def start(self):
        FakeTimer.started.append(self)

    def fire(self):
        self.func(*self.args)


def make(func):
    FakeTimer.started = []
    return Coalescer(func, delay=0.5, timer=FakeTimer)


def fire_next():
    """Fire the oldest timer not fired yet; its delay."""
    timer = next(t for t in FakeTimer.started if not getattr(t, "fired", False))
    timer.fired = True
    timer.fire()
    return timer.delay


def pending():
    return [t for t in FakeTimer.started if not getattr(t, "fired", False)]


def recorder():
    runs = []
    return runs, lambda key, items: runs.append((key, items))


def test_a_lone_call_runs_at_once_then_the_window_closes_quietly():
    runs, func = recorder()
    wake = make(func)
    wake("db1", [1])
    assert [(t.delay, t.daemon) for t in pending()] == [(0, True)], "started on a thread, without delay"
    fire_next()
    assert runs == [("db1", frozenset({1}))]
    assert [t.delay for t in pending()] == [0.5], "a window follows the run"
    fire_next()
    assert runs == [("db1", frozenset({1}))] and not pending(), "nothing waited: no second run"
    wake("db1", [2])  # after the window: at once again
    assert [t.delay for t in pending()] == [0]


def test_a_burst_is_served_by_one_run_per_window():
    runs, func = recorder()
    wake = make(func)
    wake("db1", [0])
    for lane in range(50):
        wake("db1", [lane % 3])
    assert len(FakeTimer.started) == 1, "the calls during the first run's window start nothing"
    fire_next()  # the first call's run
    wake("db1", [7])  # after that run began: it may not have seen this call's commit
    fire_next()  # the end of the window serves every call that waited
    assert runs == [("db1", frozenset({0})), ("db1", frozenset({0, 1, 2, 7}))]
    fire_next()  # the second run's window: nobody waited
    assert len(runs) == 2 and not pending()


def test_keys_are_independent():
    runs, func = recorder()
    wake = make(func)
    wake("db1")
    wake("db2")
    wake("db1")
    assert [t.args for t in FakeTimer.started] == [("db1", frozenset()), ("db2", frozenset())]
    fire_next()
    fire_next()
    assert sorted(key for key, _items in runs) == ["db1", "db2"]
    fire_next()  # db1's window: its second call waited for it
    assert [key for key, _items in runs].count("db1") == 2


def test_a_failing_run_is_logged_and_still_closes_its_window(caplog):
    def fail(_key, _items):
        raise RuntimeError("database gone")

    wake = make(fail)
    wake("db1")
    fire_next()
    assert "database gone" in caplog.text
    wake("db1")  # waits for the window
    assert [t.delay for t in pending()] == [0.5]
    fire_next()  # served, failing again, and a new window
    assert len(caplog.records) == 2
    fire_next()
    wake("db1")
    assert [t.delay for t in pending()] == [0], "after the windows, at once again"
