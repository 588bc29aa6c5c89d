"""The aggregate stage's acknowledgements: what it acknowledges is what Faust commits."""

from blipwatch.detectors.catalogue import Catalogue
from blipwatch.detectors.windows import closes_at
from blipwatch.stream_app.aggregate import PartitionAggregator

MINUTE = 60_000


def aggregator() -> tuple[PartitionAggregator, Catalogue]:
    catalogue = Catalogue.from_dict(None)
    return PartitionAggregator(0, catalogue, lambda series: None), catalogue


def test_acknowledges_in_offset_order_so_a_commit_never_passes_an_open_window():
    """Faust 0.15 commits past an unacknowledged message at the committed offset once the next
    one is acknowledged (faust-streaming/faust#606): a message that fed no open window must still
    wait for the ones before it."""
    agg, catalogue = aggregator()
    acked: list[str] = []
    agg.merge({"complaint_count|all": [[0, 3, 0]]}, lambda: acked.append("window 0"))
    agg.merge({}, lambda: acked.append("report only"))
    agg.merge({"complaint_count|all": [[MINUTE, 2, 0]]}, lambda: acked.append("window 1"))
    agg.acknowledge_until(None)
    assert acked == []
    first_closes = closes_at(0, catalogue.window_ms, catalogue.lateness_ms)
    agg.acknowledge_until(first_closes - 1)
    assert acked == []
    agg.acknowledge_until(first_closes)
    assert acked == ["window 0", "report only"]
    agg.acknowledge_until(closes_at(MINUTE, catalogue.window_ms, catalogue.lateness_ms))
    assert acked == ["window 0", "report only", "window 1"]


def test_a_message_that_fed_no_window_is_acknowledged_at_once_when_nothing_is_open():
    agg, _ = aggregator()
    acked: list[str] = []
    agg.merge({}, lambda: acked.append("report"))
    agg.acknowledge_until(None)
    assert acked == ["report"]


def test_partials_are_admitted_once_each_in_offset_order_and_a_jump_asks_for_one_seek_back():
    agg, _ = aggregator()
    agg.next_offset = 5                       # where the partition resumes (its committed offset)
    assert agg.admit(5) == "process"
    assert agg.admit(8) == "seek"             # 6 and 7 were dropped on the way: go back for them
    assert agg.admit(9) == "skip"             # still buffered from before the seek
    assert agg.admit(6) == "process"
    assert agg.admit(6) == "skip"             # delivered twice: merged once
    assert agg.admit(7) == "process"
    assert agg.admit(8) == "process"
    assert agg.admit(10) == "seek"            # a later jump asks again
