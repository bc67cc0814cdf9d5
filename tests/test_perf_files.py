"""The perf session's result files: a run of some rows updates those rows and keeps the rest."""

import importlib.util
import json
from pathlib import Path

import pytest

# benchmarks/ is not part of the installed package: load the module from the checkout
_spec = importlib.util.spec_from_file_location(
    "seqbench_perf", Path(__file__).resolve().parents[1] / "benchmarks" / "perf.py")
perf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(perf)


def _row(name, value, run=None):
    r = {"row": name, "value": value, "unit": "x", "target": "<= 1.10", "met": True,
         "detail": "d|e"}
    return r if run is None else {**r, "run": run}


def _header(date):
    return {"machine": "M (2 cores)", "date": date, "version": "0", "torch": "t",
            "command": f"perf at {date}", "load": "0.1", "host": "h"}


def test_a_run_replaces_its_rows_in_place_and_keeps_the_others(tmp_path):
    # the format written before runs were recorded per row: one header, rows without "run"
    path = tmp_path / "perf.json"
    path.write_text(json.dumps({"header": _header("d1"),
                                "rows": [_row("a", 1.0), _row("b", 2.0), _row("c", 3.0)]}))
    rows, runs = perf.merged(*perf.earlier(path), [_row("b", 20.0), _row("z", 9.0)],
                             _header("d2"))
    assert [(r["row"], r["value"], r["run"]) for r in rows] == [
        ("a", 1.0, 0), ("b", 20.0, 1), ("c", 3.0, 0), ("z", 9.0, 1)]
    assert [h["date"] for h in runs] == ["d1", "d2"]
    md = perf.markdown(rows, runs)
    assert "1. d1," in md and "2. d2," in md and "| b | 20.000x | <= 1.10 | yes | 2 | d\\|e |" in md

    # a third run that measures every row of the first: run 1 is dropped, runs renumbered
    rows, runs = perf.merged(rows, runs, [_row("a", 5.0), _row("c", 6.0)], _header("d3"))
    assert [(r["row"], r["run"]) for r in rows] == [("a", 1), ("b", 0), ("c", 1), ("z", 0)]
    assert [h["date"] for h in runs] == ["d2", "d3"]


def test_one_run_has_no_run_column(tmp_path):
    rows, runs = perf.merged(*perf.earlier(tmp_path / "none.json"), [_row("a", 1.0)],
                             _header("d1"))
    md = perf.markdown(rows, runs)
    assert runs == [_header("d1")] and "| row | value | target | met | detail |" in md
    assert "d1, seqbench 0, torch t, command `perf at d1`" in md


@pytest.mark.parametrize("text", ["{not json", json.dumps({"rows": []}),
                                  json.dumps({"runs": [_header("d")], "rows": [_row("a", 1, 3)]})])
def test_an_unreadable_file_is_refused_before_anything_is_measured(tmp_path, text):
    path = tmp_path / "perf.json"
    path.write_text(text)
    with pytest.raises(SystemExit, match="expected a perf JSON .* pass --replace"):
        perf.earlier(path)
