"""The collector pause of the inbox's batches: off inside, back on after, whatever happens, and
never switched on by a pause that found it off."""

import gc

import pytest

from visionmetrics_whatsapp.tools.collector import collector_paused


@pytest.fixture(autouse=True)
def _restore():
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


def test_the_collector_is_off_inside_and_on_after():
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_it_is_on_again_after_an_error():
    gc.enable()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("a batch failed")
    assert gc.isenabled()


def test_a_nested_pause_leaves_it_to_the_outer_one():
    gc.enable()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "the inner pause did not switch it on"
    assert gc.isenabled()


def test_a_process_without_collector_stays_without():
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
