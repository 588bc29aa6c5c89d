"""``blipwatch score-series``: CSV in, metric-point columns out, no look-ahead, clear errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from blipwatch.stream_app.cli import main


def write_series(path, values, start=1_700_000_000, step=60, header="timestamp,value", ms=False):
    with open(path, "w") as handle:
        handle.write(header + "\n")
        for i, value in enumerate(values):
            t = (start + i * step) * (1000 if ms else 1)
            handle.write(f"{t},{value}\n")
    return path


def read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def noisy(tmp_path):
    values = list(np.round(np.random.default_rng(1).normal(50, 2, 400), 3)) + [90.0] + [50.0] * 20
    return write_series(tmp_path / "orders.csv", values)


def test_one_input_writes_one_file_with_the_metric_point_columns_in_input_order(noisy, tmp_path):
    out = tmp_path / "scored.csv"
    assert main(["score-series", str(noisy), "--out", str(out)]) == 0
    rows = read(out)
    assert list(rows[0]) == ["timestamp", "value", "expected", "lower", "upper", "score", "is_anomaly"]
    assert len(rows) == 421
    assert [r["timestamp"] for r in rows] == [r["timestamp"] for r in read(noisy)]
    assert rows[400]["is_anomaly"] == "1" and float(rows[400]["score"]) >= 0.6
    assert sum(r["is_anomaly"] == "1" for r in rows[100:]) <= 2


def test_scores_have_no_look_ahead_and_are_deterministic(noisy, tmp_path):
    short = write_series(tmp_path / "short.csv", [r["value"] for r in read(noisy)][:200])
    main(["score-series", str(noisy), "--out", str(tmp_path / "a.csv")])
    main(["score-series", str(noisy), "--out", str(tmp_path / "b.csv")])
    main(["score-series", str(short), "--out", str(tmp_path / "c.csv")])
    full, again, prefix = read(tmp_path / "a.csv"), read(tmp_path / "b.csv"), read(tmp_path / "c.csv")
    assert full == again
    assert full[:200] == prefix


def test_several_inputs_go_to_a_folder_keeping_their_names(tmp_path):
    a = write_series(tmp_path / "a.csv", [1, 2, 3])
    (tmp_path / "in2").mkdir()
    b = write_series(tmp_path / "in2" / "b.csv", [5, 5, 5], ms=True)
    assert main(["score-series", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.csv", "b.csv"]


def test_rates_with_numerator_and_denominator_weigh_the_volume(tmp_path):
    path = tmp_path / "carts.csv"
    with open(path, "w") as handle:
        handle.write("timestamp,value,numerator,denominator\n")
        for i in range(300):
            handle.write(f"2024-05-01T00:{i // 60:02d}:{i % 60:02d}Z,,{700 + (i % 5 - 2) * 10},1000\n")
        handle.write("2024-05-01T05:00:00Z,,4,4\n2024-05-01T05:01:00Z,,950,1000\n")
    assert main(["score-series", str(path), "--out", str(tmp_path / "o.csv")]) == 0
    rows = read(tmp_path / "o.csv")
    assert rows[-2]["is_anomaly"] == "0" and rows[-1]["is_anomaly"] == "1"


def test_config_detector_section_is_applied_and_a_bad_key_is_one_clear_line(noisy, tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("detector:\n  threshold: 0.99\n  value:\n    alpha: 0.2\n")
    assert main(["score-series", str(noisy), "--out", str(tmp_path / "o.csv"), "--config", str(good)]) == 0
    assert main(["score-series", str(noisy), "--out", str(tmp_path / "d.csv")]) == 0
    width = lambda row: float(row["upper"]) - float(row["lower"])  # noqa: E731
    # a higher threshold = wider bounds (the bounds are where the score reaches the threshold)
    assert width(read(tmp_path / "o.csv")[300]) > 1.2 * width(read(tmp_path / "d.csv")[300])
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector:\n  treshold: 0.5\n")
    assert main(["score-series", str(noisy), "--out", str(tmp_path / "o.csv"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "treshold" in err and "Traceback" not in err


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("time,v\n1,2\n", "header must name timestamp and value"),
    ("timestamp,value\n1700000000,1\n1700000060,oops\n", "line 3"),
    ("timestamp,value\nyesterday,1\n", "line 2"),
])
def test_bad_input_is_one_clear_line_and_exit_code_2(tmp_path, capsys, content, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    assert main(["score-series", str(path), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("content, message", [
    ("timestamp,value\n1700000000,1\n1700000060,\xe9\n".encode("latin-1"), "not UTF-8"),
    (b"timestamp,value\n1700000000,\"" + b"1" * (129 * 1024) + b"\"\n", "line 2 cannot be read as CSV"),
    (b"timestamp,value\n1700000000,1\n1700000060,inf\n", "line 3"),
    (b"timestamp,value\n1700000000,1\n1700000060,-Infinity\n", "line 3"),
    (b"timestamp,value\n1700000000,1\n1700000060,1e20\n", "line 3"),
    (b"timestamp,value\n2024,1\n", "neither ISO 8601 nor epoch"),
    (b"timestamp,value\n1700000060,1\n1700000000,2\n", "line 3: timestamp 1700000000 is before line 2's"),
    (b"timestamp,value\n1700000000,1\n1700000000,2\n", "is the same as line 2's"),
    (b"timestamp,value,numerator,denominator\n1700000000,,-1,10\n", "must not be negative"),
    (b"timestamp,value,numerator,denominator\n1700000000,,11,10\n", "more than denominator"),
])
def test_what_used_to_be_a_traceback_or_a_silent_wrong_result_is_one_clear_line(tmp_path, capsys, content, message):
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    assert main(["score-series", str(path), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "o.csv").exists()


def test_a_bad_line_late_in_the_input_leaves_the_previous_output_untouched(noisy, tmp_path, capsys):
    out = tmp_path / "o.csv"
    assert main(["score-series", str(noisy), "--out", str(out)]) == 0
    before = out.read_bytes()
    broken = tmp_path / "broken.csv"
    broken.write_text(noisy.read_text() + "1800000000,oops\n")
    assert main(["score-series", str(broken), "--out", str(out)]) == 2
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
