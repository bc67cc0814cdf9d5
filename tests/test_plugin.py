"""A real plugin package, built and installed into this environment, found by entry points."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from seqbench import registry
from seqbench.testing import check_model

PLUGIN = Path(__file__).parent / "plugin_example"

SUITE = """
[suite]
name = "plugin"
seeds = [0, 1]
[data]
n_train = 200
n_valid = 20
n_test = 300
[[task]]
name = "echo"
vocab = 8
[[model]]
name = "token-lookup"
[[model]]
name = "chance"
"""


@pytest.fixture(scope="module")
def installed_plugin():
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-build-isolation", str(PLUGIN)],
                   check=True, capture_output=True)
    for reg in (registry.models, registry.tasks):
        reg._eps = None  # rescan the entry points in this process
    yield
    subprocess.run([*pip, "uninstall", "-q", "-y", "seqbench-example-plugin"], check=True,
                   capture_output=True)
    for reg in (registry.models, registry.tasks):
        reg._eps = None


def test_plugin_is_listed_and_runs_in_a_suite(installed_plugin, tmp_path):
    seqbench = [sys.executable, "-m", "seqbench.cli"]
    listing = subprocess.run([*seqbench, "list", "models"], capture_output=True, text=True,
                             check=True).stdout
    assert "token-lookup:" in listing
    suite = tmp_path / "plugin.toml"
    suite.write_text(SUITE)
    store = tmp_path / "s.sqlite"
    out = subprocess.run([*seqbench, "run", str(suite), "--store", str(store)],
                         capture_output=True, text=True, check=True).stdout
    assert "echo" in out and "token-lookup" in out     # the table names both
    rows = sqlite3.connect(store).execute(
        "SELECT model, avg(score), chance, count(*) FROM runs WHERE status = 'ok' GROUP BY model"
    ).fetchall()
    by_model = {m: (score, chance, n) for m, score, chance, n in rows}
    assert by_model["token-lookup"][0] == 1.0           # the lookup solves echo with delay 0
    assert by_model["token-lookup"][1] == 0.125         # the task's analytic chance, 1/vocab
    assert abs(by_model["chance"][0] - 1 / 8) < 0.07    # the blind model sits near it
    assert by_model["chance"][2] == by_model["token-lookup"][2] == 2  # one row per seed


def test_plugin_model_passes_conformance(installed_plugin):
    check_model(registry.models.get("token-lookup")())
