"""The coalescing timer that wakes the inbox lanes: every call is followed by one run of the
function that starts after it and sees the call's items, and a burst costs one run."""

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
    return Coalescer(func, delay=0.25, timer=FakeTimer)


def recorder():
    runs = []
    return runs, lambda key, items: runs.append(key)


def test_a_burst_is_served_by_one_delayed_run():
    runs, func = recorder()
    wake = make(func)
    for _ in range(50):
        wake("db1")
    assert runs == [], "nothing runs before the delay"
    assert len(FakeTimer.started) == 1
    timer = FakeTimer.started[0]
    assert (timer.delay, timer.daemon) == (0.25, True)
    timer.fire()
    assert runs == ["db1"]


def test_a_call_after_the_run_started_gets_its_own_run():
    runs, func = recorder()
    wake = make(func)
    wake("db1")
    FakeTimer.started[0].fire()
    wake("db1")  # after the run began: the run may not have seen this call's commit
    assert len(FakeTimer.started) == 2
    FakeTimer.started[1].fire()
    assert runs == ["db1", "db1"]


def test_keys_are_independent():
    runs, func = recorder()
    wake = make(func)
    wake("db1")
    wake("db2")
    wake("db1")
    assert [t.args for t in FakeTimer.started] == [["db1"], ["db2"]]
    for timer in FakeTimer.started:
        timer.fire()
    assert sorted(runs) == ["db1", "db2"]


def test_a_failing_run_is_logged_and_the_next_call_schedules_again(caplog):
    def fail(_key, _items):
        raise RuntimeError("database gone")

    wake = make(fail)
    wake("db1")
    FakeTimer.started[0].fire()
    assert "database gone" in caplog.text
    wake("db1")
    assert len(FakeTimer.started) == 2


def test_the_run_gets_the_items_of_every_call_it_serves():
    runs = []
    wake = make(lambda key, items: runs.append((key, items)))
    wake("db1", [0])
    wake("db1", [2, 0])
    wake("db1")
    wake("db2", [1])
    assert len(FakeTimer.started) == 2
    FakeTimer.started[0].fire()
    wake("db1", [3])  # after the run began: a run of its own, with its own items
    for timer in FakeTimer.started[1:]:
        timer.fire()
    assert runs == [("db1", frozenset({0, 2})), ("db2", frozenset({1})), ("db1", frozenset({3}))]
