"""The benchmark's pure helpers: percentiles, rates, the record mix."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from app.models import InboundMessage, SendRequest
from app.rules.consent import SubscriberConsent
from app.rules.numbers import sender_number, subscriber_number
from app.settings import Settings
from app.tools.bench import (
    BaselineFigures,
    BenchReport,
    ConsentTemplate,
    LatencyWindow,
    RecoveryFigures,
    ThroughputFigures,
    bench_senders,
    bench_subscribers,
    extrapolate,
    latency_figures,
    latency_rates,
    optout_subscriber,
    percentile,
    rate_ratio,
    record_mix,
    report_rows,
    steady_rate,
)

MOMENT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        (list(map(float, range(1, 101))), 99, 99.01),
    ],
    ids=["one value", "median of even", "minimum", "maximum", "p99 of 1..100"],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_refuses_no_values_and_bad_ranks() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_steady_rate_leaves_out_start_and_tail() -> None:
    # 10 s of start-up with nothing, then 100 records/s, then a slow tail.
    samples = [(10.0 + t, 100 * t) for t in range(11)] + [(30.0, 1100)]
    assert steady_rate(samples, total=1000) == pytest.approx(100.0)


def test_steady_rate_needs_progress() -> None:
    assert steady_rate([], total=10) is None
    assert steady_rate([(1.0, 5)], total=1000) is None


def test_record_mix_counts_and_shares() -> None:
    subscribers = bench_subscribers(200)
    mix = list(record_mix(5000, subscribers, bench_senders(), seed=1))
    kinds = Counter(record.kind for record in mix)

    assert kinds["send"] == 5000
    assert 0.08 < kinds["inbound"] / len(mix) < 0.12
    keywords = {"STOP", "stop", " Stop. ", "END", "unsub", "START", "unstop"}
    inbound_texts = [r.text for r in mix if r.kind == "inbound"]
    assert 0 < sum(text in keywords for text in inbound_texts) < len(inbound_texts)
    assert len({record.record_id for record in mix}) == len(mix)


def test_record_mix_is_the_same_for_a_seed() -> None:
    subscribers = bench_subscribers(50)
    first = list(record_mix(300, subscribers, bench_senders(), seed=7))
    again = list(record_mix(300, subscribers, bench_senders(), seed=7))
    assert first == again


def test_mix_records_are_valid_wire_records() -> None:
    subscribers = bench_subscribers(20)
    for record in record_mix(200, subscribers, bench_senders(), seed=3):
        raw = record.encode(MOMENT)
        model = SendRequest if record.kind == "send" else InboundMessage
        parsed = model.model_validate_json(raw)
        assert parsed.subscriber == record.subscriber
        assert orjson.loads(raw)["from" if record.kind == "inbound" else "to"] == (
            record.subscriber
        )


def test_numbers_are_valid_and_distinct() -> None:
    subscribers = bench_subscribers(500)
    assert len(set(subscribers)) == 500
    assert all(subscriber_number(s) == s for s in subscribers)
    assert all(sender_number(s.number) == s.number for s in bench_senders())
    optouts = [optout_subscriber(i) for i in range(0, 2_000_000, 4999)]
    assert len(set(optouts)) == len(optouts)
    assert all(subscriber_number(s) == s for s in optouts)


def test_consent_template_rows_are_consent_of_their_subscriber() -> None:
    template = ConsentTemplate(Settings(), bench_senders()[0])
    row = template.row("+14155550123", "bench-stop-9")

    consent = SubscriberConsent.from_json(row)
    assert consent.subscriber == "+14155550123"
    assert list(consent.opt_outs) == ["campaign:bench-1"]
    assert consent.history[0].message_id == "bench-stop-9"


def test_latency_figures_skip_the_warm_up_and_count_the_missing() -> None:
    sent = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}
    arrived = {"a": 0.5, "b": 1.010, "c": 2.020}
    window = LatencyWindow(rate=2, seconds=4, measured_from=1.0)

    figures = latency_figures(window, sent, arrived)

    assert figures.measured == 2
    assert figures.missing == 1
    assert figures.median_ms == pytest.approx(15.0)


def test_latency_rates_add_half_the_maximum_when_the_offer_is_too_high() -> None:
    def one_worker(rate: float | None) -> ThroughputFigures:
        return ThroughputFigures(1, 10, 10, None, None, None, None, rate)

    assert latency_rates(2000, []) == [2000]
    assert latency_rates(2000, [one_worker(10_000.0)]) == [2000]
    assert latency_rates(2000, [one_worker(1000.0)]) == [500, 2000]


def _million_restored(**fields: Any) -> RecoveryFigures:
    """A restore of 1,000,000 opt-outs in 20 s, extrapolated to 10,000,000."""
    return RecoveryFigures(
        **{
            "optouts": 1_000_000,
            "produce_s": 10.0,
            "recovery_s": 20.0,
            "extrapolated_to": 10_000_000,
            "extrapolated_recovery_s": None,
            "extrapolated_rss_mb": None,
            **fields,
        }
    )


def test_extrapolation_is_linear_from_the_idle_worker() -> None:
    figures = _million_restored(
        rss_after_mb=150.0, peak_rss_mb=160.0, idle_rss_mb=100.0
    )

    extrapolate(figures)

    assert figures.extrapolated_recovery_s == pytest.approx(200.0)
    assert figures.extrapolated_rss_mb == pytest.approx(700.0)


def _worker(steady: float | None, overall: float | None) -> ThroughputFigures:
    return ThroughputFigures(1, 10, 10, None, None, None, overall, steady)


def test_rate_ratio_prefers_steady_rates_and_needs_both() -> None:
    baseline = BaselineFigures(
        records=10,
        requests=10,
        elapsed_s=1.0,
        requests_per_s=500.0,
        steady_requests_per_s=1000.0,
    )

    assert rate_ratio(_worker(250.0, 100.0), baseline) == pytest.approx(0.25)
    assert rate_ratio(_worker(None, 100.0), baseline) == pytest.approx(0.1)
    assert rate_ratio(_worker(250.0, 100.0), _worker(500.0, 1.0)) == 0.5
    assert rate_ratio(_worker(None, None), baseline) is None
    assert rate_ratio(None, baseline) is None
    assert rate_ratio(_worker(250.0, None), None) is None


def test_the_report_sets_the_worker_against_the_faust_floor() -> None:
    report = BenchReport(options={}, machine={"nproc": 2, "cpu": "test"})
    report.throughput.append(_worker(300.0, 290.0))
    report.faust_floor = _worker(1200.0, 1100.0)

    rows = {figure: value for figure, value, _ in report_rows(report)}

    assert rows["Faust floor, answers/s (steady)"] == "1,200"
    assert rows["1 worker / Faust floor"] == "0.25"
    assert orjson.loads(report.to_json())["faust_floor_ratio"] == 0.25


def test_a_recovery_only_report_has_no_throughput_rows() -> None:
    report = BenchReport(options={}, machine={"nproc": 2, "cpu": "test"})
    report.recovery = extrapolate(
        RecoveryFigures(
            10_000_000, 60.0, 1500.0, 300.0, 310.0, None, 10_000_000, None, None
        )
    )

    rows = {figure: value for figure, value, _ in report_rows(report)}

    assert rows["recovery of 10,000,000 opt-outs, s"] == "1,500.0"
    assert rows["peak RSS, 10,000,000 opt-outs, MB"] == "310"
    assert not any("extrapolated" in figure for figure in rows)
    assert not any("worker(s)" in figure for figure in rows)


def test_extrapolation_uses_the_growth_between_two_restores() -> None:
    figures = _million_restored(
        rss_after_mb=200.0,
        peak_rss_mb=205.0,
        idle_rss_mb=90.0,
        first_optouts=250_000,
        first_rss_mb=185.0,
    )

    extrapolate(figures)

    # 15 MB per 750,000 rows, not the 110 MB step from the idle worker.
    assert figures.extrapolated_rss_mb == pytest.approx(200.0 + 15.0 * 12)
