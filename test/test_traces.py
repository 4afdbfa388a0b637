import numpy as np
import pytest

from edgeml_ros.core.traces import (
    TraceError,
    load_trace,
    markov_trace,
    outage_trace,
    step_trace,
    throttle_schedule,
)


def write(tmp_path, text):
    path = tmp_path / "link.csv"
    path.write_text(text)
    return path


def test_load_with_comments_optional_rtt_and_outage(tmp_path):
    path = write(
        tmp_path, "# a drone flight\nt_s,mbps,rtt_ms\n0,20,15\n\n10,0,80  # outage\n12.5,5,30\n"
    )
    trace = load_trace(path)
    np.testing.assert_array_equal(trace.t_s, [0, 10, 12.5])
    mbps, rtt = trace.at([0, 9.99, 10, 11, 12.5, 1000])
    np.testing.assert_array_equal(mbps, [20, 20, 0, 0, 5, 5])
    np.testing.assert_array_equal(rtt, [15, 15, 80, 80, 30, 30])
    no_rtt = load_trace(write(tmp_path, "t_s,mbps\n0,3\n"), default_rtt_ms=7.0)
    assert no_rtt.at(5.0) == (3.0, 7.0)


def test_one_time_reads_as_the_same_time_in_an_array():
    trace = step_trace((20.0, 0.13, 0.0, 5.0), 12.5)
    times = [-1.0, *trace.t_s.tolist(), *(trace.t_s + 1e-9).tolist(), 30.5, 1e9, float("inf")]
    mbps, rtt = trace.at(np.array(times))
    assert [trace.at(t) for t in times] == list(zip(mbps, rtt, strict=True))


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "no data rows"),
        ("time,bw\n0,1\n", ":1: header must be"),
        ("t_s,mbps\n0,fast\n", r":2: mbps 'fast' is not a number"),
        ("t_s,mbps\n0,1\n5,-2\n", ":3: mbps '-2' must be a finite number >= 0"),
        ("t_s,mbps\n0,1\n5,2\n5,3\n", ":4: t_s 5 does not come after 5"),
        ("t_s,mbps\n1,1\n", ":2: the first row must be at t_s 0"),
        ("t_s,mbps,rtt_ms\n0,1\n", ":2: 2 values, the header has 3"),
        ("t_s,mbps,rtt_ms\n0,1,nan\n", ":2: rtt_ms 'nan' must be a finite number"),
    ],
)
def test_bad_files_name_the_line(tmp_path, text, match):
    with pytest.raises(TraceError, match=match):
        load_trace(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(TraceError, match="not found"):
        load_trace(tmp_path / "nope.csv")


def test_save_round_trip(tmp_path):
    trace = throttle_schedule(phase_s=5)
    trace.save(tmp_path / "t.csv")
    loaded = load_trace(tmp_path / "t.csv")
    np.testing.assert_allclose(loaded.mbps, trace.mbps)
    np.testing.assert_allclose(loaded.t_s, trace.t_s)


def test_generators():
    a = markov_trace(np.random.default_rng(3), 120.0)
    b = markov_trace(np.random.default_rng(3), 120.0)
    np.testing.assert_array_equal(a.mbps, b.mbps)  # seeded: deterministic
    assert a.duration_s < 120.0 and set(a.mbps) <= {0.1, 1.0, 5.0, 20.0}
    assert throttle_schedule().at([0, 25, 45, 65, 85])[0].tolist() == [50, 0.13, 0.04, 0.13, 50]
    assert outage_trace(10, 5, 10).at([4, 5, 14.9, 15])[0].tolist() == [10, 0, 0, 10]
    assert step_trace((1, 2, 3), 4).at(9)[0] == 3
    with pytest.raises(TraceError, match="increase"):
        step_trace((1, 2), 0)
