"""Stack jobs (seqbench.stacking, ``seqbench run --stack K``) against the same suite run
job by job.

The reference is the unstacked runner: ``run_job`` fitting each seed's ``LSTMModel``
alone (torch's fused ``nn.LSTM``). Stacked members share no training code with it, so
agreement of the stored metrics and learning curves is a real check; what agrees is what
was measured: over 20 steps, accuracy and every stored score identical, cross-entropy
within 2.4e-7 (float32 rounding of a value near 1), curve losses within 1.4e-7 relative.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

from seqbench.cli import main
from seqbench.errors import SeqbenchError
from seqbench.executors import LocalExecutor, Queues, Slot
from seqbench.runner import InlineExecutor, run_suite
from seqbench.stacking import _members, stack_jobs, stack_key
from seqbench.store import Store
from seqbench.suite import parse_suite

# 3 seeds x (chance, a small LSTM at two learning rates, the LSTM with truncated BPTT):
# 12 jobs, the 6 plain LSTM jobs stackable together (they differ in seed and lr only),
# the others not
SUITE = """
[suite]
name = "tiny-stack"
seeds = [0, 1, 2]

[data]
n_train = 200
n_valid = 50
n_test = 100

[budget]
max_steps = 20
device = "cpu"

[[task]]
name = "jane-recall"
lag = [3]
n_names = 4

[[model]]
name = "chance"

[[model]]
name = "lstm"
hidden_size = 8
eval_every = 5
lr = [0.01, 0.005]

[[model]]
name = "lstm"
label = "lstm-tbptt"
hidden_size = 8
eval_every = 10
tbptt = 4
"""


def rows(path):
    con = sqlite3.connect(path, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return {r["hash"]: dict(r) for r in con.execute("SELECT * FROM runs")}
    finally:
        con.close()


def run(path, executor, text=SUITE, **kw):
    with Store(path) as store:
        return run_suite(parse_suite(text, "t.toml"), store, executor, log=None, **kw)


def assert_same_results(got, want):
    """Same status and scores; float32-rounding agreement of losses (see module doc)."""
    assert got["status"] == want["status"] == "ok"
    assert got["score"] == want["score"]
    assert got["n_params"] == want["n_params"]
    mg, mw = json.loads(got["metrics"]), json.loads(want["metrics"])
    assert mg.keys() == mw.keys()
    assert mg["accuracy"] == mw["accuracy"]
    assert mg["cross_entropy"] == pytest.approx(mw["cross_entropy"], rel=1e-6, abs=0)
    cg, cw = json.loads(got["curve"]), json.loads(want["curve"])
    assert [p["step"] for p in cg] == [p["step"] for p in cw] == [5, 10, 15, 20]
    for pg, pw in zip(cg, cw):
        assert pg["train_loss"] == pytest.approx(pw["train_loss"], rel=1e-5, abs=0)
        assert pg["valid_loss"] == pytest.approx(pw["valid_loss"], rel=1e-5, abs=0)
    # the gradient-decay curves, which a stack measures for all its members together
    dg, dw = (json.loads(r["diagnostics"])["grad_decay"] for r in (got, want))
    assert dg["k"] == dw["k"] and len(dw["k"]) > 5
    assert dg["init"] == pytest.approx(dw["init"], rel=1e-5, abs=0)
    assert dg["trained"] == pytest.approx(dw["trained"], rel=1e-4, abs=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The suite run job by job (no stacking), inline."""
    path = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    summary = run(path, InlineExecutor())
    assert summary["ok"] == 12
    return rows(path)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_stacked_suite_matches_unstacked_one_row_per_seed(tmp_path, reference, executor):
    path = tmp_path / "s.sqlite"
    ex = InlineExecutor() if executor == "inline" else LocalExecutor(2)
    summary = run(path, ex, stack=6)
    assert summary["ran"] == 12 and summary["ok"] == 12
    got = rows(path)
    assert got.keys() == reference.keys()  # one row per job, under the job's own hash
    stacked = [h for h, r in got.items() if "stacked" in json.loads(r["provenance"])]
    assert {(got[h]["model_label"], json.loads(got[h]["provenance"])["stacked"])
            for h in stacked} == {("lstm", 6)}
    # one stack of both learning rates, each seed at each
    assert sorted((got[h]["seed"], json.loads(got[h]["model_params"])["lr"])
                  for h in stacked) == [(s, lr) for s in (0, 1, 2) for lr in (0.005, 0.01)]
    # the stack's times are split evenly among its members
    assert len({got[h]["wall_s"] for h in stacked}) == 1
    assert len({got[h]["cpu_s"] for h in stacked}) == 1
    assert len({got[h]["fit_s"] for h in stacked}) == 1
    for h in stacked:
        assert_same_results(got[h], reference[h])
        assert got[h]["device"].startswith("cpu (")
        assert json.loads(got[h]["provenance"])["executor"] == executor
    # the jobs that cannot stack ran as usual, to the same results
    for h in got.keys() - set(stacked):
        assert got[h]["status"] == "ok"
        if got[h]["model_label"] == "chance":
            assert got[h]["metrics"] == reference[h]["metrics"]
        else:  # lstm-tbptt, fitted alone by the same code: bit for bit
            assert (got[h]["metrics"], got[h]["curve"]) == (reference[h]["metrics"],
                                                           reference[h]["curve"])
    again = run(path, ex, stack=6)
    assert (again["ran"], again["already_done"]) == (0, 12)
    assert rows(path) == got


def test_a_stopped_stack_records_every_member(tmp_path):
    """A stack past its limit (per-job limit x members) gives one timeout row per seed,
    both when its thread is interrupted (inline) and when its worker is killed (local)."""
    slow = SUITE[:SUITE.index("[[model]]")] + textwrap.dedent("""
        [[model]]
        name = "lstm"
        hidden_size = 8
        max_steps = 100000
        eval_every = 100000
        """)
    for ex in (InlineExecutor(), LocalExecutor(1)):
        path = tmp_path / f"{ex.name}.sqlite"
        summary = run(path, ex, slow, stack=3, timeout=0.5)
        assert summary == {**summary, "ran": 3, "timeout": 3}
        got = list(rows(path).values())
        assert sorted(r["seed"] for r in got) == [0, 1, 2]
        for r in got:
            assert "1.5 s time limit" in r["error"] and "stack of 3" in r["error"]
            assert json.loads(r["provenance"])["stacked"] == 3


def test_grouping():
    jobs = parse_suite(SUITE.replace("seeds = [0, 1, 2]", "seeds = [0, 1, 2, 3, 4]")
                       .replace("lag = [3]", "lag = [3, 5]"), "t.toml").jobs()
    jobs = [{**j, "timeout": 10.0} for j in jobs]
    assert stack_jobs(jobs, 1) == jobs
    units = stack_jobs(jobs, 3)
    stacks = [u for u in units if "stack" in u]
    plain = [u for u in units if "stack" not in u]
    # per lag, the plain LSTM's 10 jobs (seeds 0-4 at lr 0.01, then at 0.005) in suite
    # order, cut into stacks of 3; the last one alone
    per_lag = [[(0, .01), (1, .01), (2, .01)], [(3, .01), (4, .01), (0, .005)],
               [(1, .005), (2, .005), (3, .005)]]
    assert [[(m["seed"], m["model_params"]["lr"]) for m in s["stack"]]
            for s in stacks] == per_lag * 2
    assert all(len({m["task_params"]["lag"] for m in s["stack"]}) == 1 for s in stacks)
    assert all(s["timeout"] == 30.0 and s["model_label"] == "lstm" for s in stacks)
    assert sorted((j["model_label"], j["seed"], j["model_params"]["lr"]) for j in plain
                  if j["model_label"] == "lstm") == [("lstm", 4, 0.005)] * 2
    assert sum(j["model_label"] != "lstm" for j in plain) == 20  # chance, tbptt: unstacked
    # what may differ within a stack, and what may not
    lstm = next(j for j in jobs if j["model_label"] == "lstm")
    for param, value in (("lr", 0.5), ("weight_decay", 0.1), ("clip_norm", None),
                         ("patience", 3), ("max_steps", 7), ("forget_bias", 0.0)):
        other = {**lstm, "model_params": {**lstm["model_params"], param: value}}
        assert stack_key(other) == stack_key(lstm), param
    for param, value in (("hidden_size", 16), ("batch_size", 8), ("eval_every", 7),
                         ("optimizer", "sgd"), ("precision", "bf16")):
        other = {**lstm, "model_params": {**lstm["model_params"], param: value}}
        assert stack_key(other) != stack_key(lstm), param
    members = [m["hash"] for s in stacks for m in s["stack"]] + [j["hash"] for j in plain]
    assert sorted(members) == sorted(j["hash"] for j in jobs)  # each job exactly once
    for k in (0, -1, 1.5, True):
        with pytest.raises(SeqbenchError, match="--stack: expected an int >= 1"):
            stack_jobs(jobs, k)


def test_a_gpu_slot_pins_every_member_to_its_device():
    """Routing with a faked GPU count: a stack job of device-"auto" LSTMs is a GPU job;
    the slot's device reaches every member, whose hash stays the suite's."""
    jobs = parse_suite(SUITE.replace('device = "cpu"', ""), "t.toml").jobs()
    units = stack_jobs(jobs, 3)
    q = Queues.of(units, n_gpus=1)
    # the two stacks (3 seeds at each lr) and the three tbptt LSTMs are GPU jobs; chance
    # runs on CPU workers
    assert ["stack" in j for j in q.gpu] == [True, True, False, False, False]
    assert [j["model_label"] for j in q.cpu] == ["chance"] * 3
    taken = q.take(Slot("gpu", 0))
    members = _members(taken)
    assert [m["model_params"]["device"] for m in members] == ["cuda:0"] * 3
    assert [m["hash"] for m in members] == [m["hash"] for m in taken["stack"]]


def test_cli_stack_option(tmp_path, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text(textwrap.dedent(SUITE))
    store = tmp_path / "cli.sqlite"
    assert main(["run", str(suite), "--store", str(store), "--stack", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--stack: expected an int >= 1, got 0" in err
    assert not store.exists()
    assert main(["run", str(suite), "--store", str(store), "--executor", "inline",
                 "--stack", "3"]) == 0
    out = capsys.readouterr().out
    assert "12 to run (inline); 6 of them in 2 stacks\n" in out
    assert len(rows(store)) == 12
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--stack K" in capsys.readouterr().out
