"""Remembered metric children count into the same series as `labels()` would."""

from prometheus_client import CollectorRegistry, Counter, generate_latest

from serving.metric_children import Children


def test_children_are_the_metrics_own_and_asked_of_labels_once() -> None:
    registry = CollectorRegistry()
    counter = Counter("things", "things seen", ["kind", "status"], registry=registry)
    asked: list[tuple[str, ...]] = []
    labels = counter.labels

    def counting_labels(*values: str):
        asked.append(values)
        return labels(*values)

    counter.labels = counting_labels  # type: ignore[method-assign]
    children = Children(counter)
    for _ in range(3):
        children("a", "200").inc()
    children("b", "500").inc(2)
    assert asked == [("a", "200"), ("b", "500")]  # later calls come from the dict
    assert children("a", "200") is labels("a", "200")
    exported = generate_latest(registry).decode()
    assert 'things_total{kind="a",status="200"} 3.0' in exported
    assert 'things_total{kind="b",status="500"} 2.0' in exported
