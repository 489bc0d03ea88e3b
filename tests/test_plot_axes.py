"""The quality-against-latency charts (Benchmarks, Compress): a proportion's axis is [0, 1] with room for the
points and their labels at 1.0, other metrics are ranged on their values, labels are never clipped, and the
error bars are the intervals in the data (figure objects only)."""
import pytest

from llm_lab import plot_axes
from llm_lab.bench import plots as bench_plots
from llm_lab.bench.result import Headline, TaskResult
from llm_lab.compress import plots as compress_plots


def _result(model, task, type_, headline=None, metrics=None, stats=None):
    return TaskResult(key=f"{model}-{task}", model=model, suite="s", task=task, type=type_, headline=headline,
                      metrics=metrics or {}, stats=stats or {})


def _bench(values):
    """A classification result and a speed result per model: (model, accuracy, low, high, latency ms)."""
    out = []
    for model, value, low, high, latency in values:
        out.append(_result(model, "sent", "classification", Headline("accuracy", value, low, high, n=10)))
        out.append(_result(model, "speed", "speed", Headline("latency_p50_ms", latency),
                           metrics={"latency_p50_ms": latency}))
    return out


def _scatters(fig):
    return [t for t in fig.data if t.mode == "markers+text"]


def test_bench_accuracy_axis_is_zero_to_one_with_room_for_a_perfect_score():
    # the reported case: both models 10/10; plotly's own range around 1.0 was 0–2
    fig = bench_plots.accuracy_latency(_bench([("a", 1.0, 0.722, 1.0, 5.0), ("b", 1.0, 0.722, 1.0, 9.0)]))
    low, high = fig.layout.yaxis.range
    assert -0.1 < low < 0 and 1.05 < high < 1.2  # [0, 1], padded: the points and the labels above them fit
    traces = _scatters(fig)
    assert len(traces) == 2 and all(t.cliponaxis is False for t in traces)
    assert all(t.textposition.startswith("top") for t in traces)
    a = next(t for t in traces if t.name == "a")
    assert a.error_y.arrayminus[0] == pytest.approx(1.0 - 0.722) and a.error_y.array[0] == pytest.approx(0.0)
    x_low, x_high = fig.layout.xaxis.range
    assert 0 <= x_low < 5.0 and x_high > 9.0  # latency padded both sides, never negative
    assert {t.textposition for t in traces} == {"top right", "top left"}  # the end labels lean inwards


def test_bench_other_metric_auto_ranges_with_padding():
    results = [_result("a", "gen", "generation", Headline("bleu", 23.0, 20.0, 26.0, n=50)),
               _result("b", "gen", "generation", Headline("bleu", 31.0, 28.5, 34.0, n=50))]
    for r, per_s in zip(results, (40.0, 10.0)):
        r.stats = {"examples_per_s": per_s}
    fig = bench_plots.accuracy_latency(results)
    low, high = fig.layout.yaxis.range
    assert 18.0 < low < 20.0 and 34.0 < high < 36.0  # the interval ends, padded; not 0–1, not 0–2
    assert all(t.cliponaxis is False for t in _scatters(fig))


def test_plot_axes_rules():
    assert plot_axes.is_proportion("accuracy", [0.5, 1.0]) and plot_axes.is_proportion("Macro F1", [0.2])
    assert not plot_axes.is_proportion("accuracy", [87.5])     # a percentage is not on [0, 1]
    assert not plot_axes.is_proportion("perplexity", [0.5])
    assert plot_axes.quality_range("accuracy", [0.3]) == pytest.approx([-0.05, 1.12])
    assert plot_axes.quality_range("perplexity", [10.0, 20.0]) == pytest.approx([9.5, 21.2])
    single = plot_axes.quality_range("perplexity", [12.0])
    assert single[0] < 12.0 < single[1]
    assert plot_axes.quality_range("accuracy", [1.0], [0.9], [1.05]) == pytest.approx([-0.0525, 1.176])
    assert plot_axes.latency_range([]) is None and plot_axes.latency_range([4.0]) == pytest.approx([3.76, 4.24])
    assert plot_axes.latency_range([1.0, 101.0]) == pytest.approx([0.0, 113.0])  # never below zero
    assert plot_axes.label_position(50.0, [0.0, 100.0]) == "top center"


def _report(points):
    """A compress report of (name, role, latency ms, accuracy, Wilson k of 20, size) per model."""
    from llm_lab.compress.report import ModelReport, Quality, Report, Speed
    from llm_lab.stats.intervals import wilson

    models = [ModelReport(name, role, size_bytes=size, speed=Speed(latency_p50_ms=latency),
                          quality=[Quality("t", "classification", "accuracy", k / 20, *wilson(k, 20))])
              for name, role, latency, k, size in points]
    return Report("p", [m.name for m in models[1:]], {"dataset": "d"}, 0.01, 0.05, "t", models)


def test_compress_pareto_axis_and_labels():
    report = _report([("p", "parent", 10.0, 20, 400), ("fast", "variant", 4.0, 19, 100)])
    fig = compress_plots.pareto(report)
    pts = compress_plots.points(report)
    assert pts[0]["metric"] == "accuracy" and pts[0]["value"] == 1.0
    low, high = fig.layout.yaxis.range
    assert -0.1 < low < 0 and 1.05 < high < 1.2  # was 0–2 around a perfect score
    traces = {t.name: t for t in _scatters(fig)}
    assert set(traces) == {"p", "fast"} and all(t.cliponaxis is False for t in traces.values())
    for p in pts:  # the error bars are each point's Wilson interval
        t = traces[p["name"]]
        assert t.error_y.arrayminus[0] == pytest.approx(p["value"] - p["low"])
        assert t.error_y.array[0] == pytest.approx(p["high"] - p["value"])
    assert traces["p"].error_y.arrayminus[0] > 0.1  # 20 of 20: the interval does not collapse
    x_low, x_high = fig.layout.xaxis.range
    assert 0 <= x_low < 4.0 and x_high > 10.0


def test_compress_pareto_other_metric_auto_ranges():
    report = _report([("p", "parent", 10.0, 20, 400), ("fast", "variant", 4.0, 19, 100)])
    for m, value in zip(report.models, (35.0, 41.0)):
        q = m.quality[0]
        q.metric, q.value, q.low, q.high = "perplexity", value, value - 2, value + 3
        q.higher_is_better = False
    low, high = compress_plots.pareto(report).layout.yaxis.range
    assert 31.0 < low < 33.0 and 44.0 < high < 46.0
