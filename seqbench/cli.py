"""The ``seqbench`` command.

User errors (a malformed suite, an unknown model or parameter, a bad path) print one
line, ``seqbench: error: ...``, and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__, registry
from .errors import SeqbenchError
from .store import DEFAULT_STORE


def _cmd_run(args) -> int:
    from .executors import check_cuda_jobs
    from .report import RUN_COLUMNS, render_table, summary_table
    from .runner import make_executor, run_suite, select_jobs, suite_jobs
    from .store import Store, check_store_path
    from .suite import check_timeout, load_suite

    suite = load_suite(args.suite)       # validate everything before touching the store
    args.suite_name = suite.name         # for the line an interruption prints
    executor = make_executor(args.executor, jobs=args.jobs, threads=args.threads,
                             gpu_slots=args.gpu_slots)
    if args.timeout is not None:
        try:
            check_timeout(args.timeout)
        except SeqbenchError as exc:
            raise SeqbenchError(f"--timeout: {exc}") from None
    if args.stack < 1:
        raise SeqbenchError(f"--stack: expected an int >= 1, got {args.stack}")
    check_store_path(args.store)
    executor.check()                     # reach a remote scheduler before creating the store
    if getattr(executor, "local_devices", True):  # the jobs to run need devices seen here
        jobs = suite_jobs(suite, args.timeout)
        try:
            check_cuda_jobs(jobs)
        except SeqbenchError:
            if not Path(args.store).is_file():
                raise
            with Store(args.store, create=False) as stored:  # only those not run yet count
                jobs, _ = select_jobs(jobs, stored, force=args.force,
                                      retry_failed=args.retry_failed)
            check_cuda_jobs(jobs)
    progress = "bar" if sys.stdout.isatty() else "lines"
    with Store(args.store) as store:
        summary = run_suite(suite, store, executor, force=args.force,
                            retry_failed=args.retry_failed, log=None if args.quiet else print,
                            timeout=args.timeout, progress=progress, stack=args.stack)
        df = store.frame(suite.name, columns=RUN_COLUMNS)
    print()
    print(render_table(summary_table(df)))
    # what the table shows: the suite's jobs as stored, this run's and earlier runs'
    stored = df["status"].value_counts() if "status" in df else {}
    bad = {s: int(stored[s]) for s in ("failed", "timeout", "diverged") if s in stored}
    n_seeds = len(suite.seeds)
    print(f"\nmean over {n_seeds} seed{'s' if n_seeds > 1 else ''}; "
          f"ran {summary['ran']} job(s), {summary['already_done']} already done; "
          f"store: {args.store}")
    if bad:
        print("not ok: " + ", ".join(f"{v} {k}" for k, v in bad.items())
              + f" (see why: seqbench results --store {args.store} --errors; "
              "redo them: --retry-failed)")
    # a job that raised or whose worker died is an error; a timeout or a divergence is a
    # result of the model under the suite's budget
    return 1 if bad.get("failed") else 0


def _cmd_list(args) -> int:
    if args.what is not None:
        _list(args.what)
        return 0
    for i, what in enumerate(("models", "tasks", "suites")):  # each under a heading
        print(("\n" if i else "") + f"# {what}")
        _list(what)
    return 0


def _list(what: str) -> None:
    """Print the registered models or tasks with their parameters, or the shipped suites."""
    if what == "suites":
        _list_suites()
        return
    reg = registry.models if what == "models" else registry.tasks
    for name in reg.names():
        try:
            cls = reg.get(name)
        except SeqbenchError as exc:
            print(f"{name}: {exc}")
            continue
        summary = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
        head = f"{name}: {summary or cls.__name__}"  # the docstring's first paragraph
        if what == "tasks":
            try:
                spec = cls().spec()
                head += (f"\n    shape {spec.shape}; {spec.input_kind} -> {spec.target_kind}; "
                         f"metric {spec.metric} ({'higher' if spec.higher_is_better else 'lower'}"
                         f" is better); chance {spec.chance:.4g} at the defaults")
            except Exception as exc:  # noqa: BLE001 - listing must not die on one task
                head += f"\n    (spec unavailable: {exc})"
        else:
            tags = cls.tags()
            head += (f"\n    inputs {'/'.join(tags['input_kinds'])}; "
                     f"targets {'/'.join(tags['target_kinds'])}"
                     + ("; torch" if tags["uses_torch"] else ""))
        print(head)
        params = registry.param_defaults(cls)
        if params:
            print("    " + ", ".join(k if v is inspect.Parameter.empty else f"{k}={v!r}"
                                     for k, v in params.items()))


def _list_suites() -> None:
    """The suites shipped in the package: name, job count, description, file."""
    from .suite import builtin_suites, load_suite

    for name, path in builtin_suites().items():
        try:
            suite = load_suite(path)
            print(f"{name}: {suite.description or '(no description)'}\n"
                  f"    {len(suite.jobs())} jobs; {path}")
        except SeqbenchError as exc:   # listing must not die on one suite
            print(f"{name}: {exc}")


def _chosen_suites(store, suite: str | None, command: str, path: str) -> list[str]:
    """The store's suites, or the one named ``suite`` (an error naming those there if the
    store has no such suite)."""
    names = store.suite_names()
    if suite is None:
        return names
    if suite not in names:
        raise SeqbenchError(f"{command}: store {path} has no suite {suite!r}; "
                            f"it has: {', '.join(names) or 'none'}")
    return [suite]


def _cmd_results(args) -> int:
    from .report import (
        RUN_COLUMNS,
        incomplete_note,
        render_table,
        setting_names,
        suite_plan,
        summary_table,
    )
    from .store import Store

    with Store(args.store, create=False) as store:
        frames = [(name, store.frame(name, columns=RUN_COLUMNS), suite_plan(store, name))
                  for name in _chosen_suites(store, args.suite, "results", args.store)]
    if not frames:
        print("(no results)")
        return 0
    if args.errors:
        for name, df, plan in frames:
            bad = setting_names(df[df["status"] != "ok"])
            note = incomplete_note(plan, name)
            if len(frames) > 1:
                print(f"suite {name}")
            if df.empty:
                print("no job has a result yet")
            elif bad.empty:
                print(f"every job {'with a result ' if note else ''}finished ok "
                      f"({len(df)} job{'s' * (len(df) != 1)})")
            for _, r in bad.iterrows():
                first = (r["error"] or "").splitlines()[0] if r["error"] else ""
                print(f"{r['status']}: {r['model_name']} on {r['setting']} seed {r['seed']}: "
                      f"{first}")
            if note:
                print(note)
        return 0
    for name, df, plan in frames:
        print(f"suite {name}")
        print(render_table(summary_table(df, plan)))
        note = incomplete_note(plan, name)
        if note:
            print(note)
        print()
    return 0


def _cmd_report(args) -> int:
    from .plots import slugs
    from .report import MANIFEST, check_formats, clear_report, report_inputs, write_report
    from .store import Store

    formats = check_formats(tuple(f.strip() for f in args.format.split(",") if f.strip()))
    with Store(args.store, create=False) as store:
        names = _chosen_suites(store, args.suite, "report", args.store)
        if not names:
            raise SeqbenchError(f"report: store {args.store} holds no results "
                                "(run a suite first)")
        suites = [(name, store.suite_text(name), *report_inputs(store, name))
                  for name in names]
    dirs = slugs(str(name) for name, *_ in suites)
    outs = [Path(args.out) / d for d in dirs.values()] if len(suites) > 1 else []
    for out in [Path(args.out), *outs]:  # before any is written: a file where a folder goes
        if out.exists() and not out.is_dir():
            raise SeqbenchError(f"report: --out {out}: expected a directory, got a file")
    if len(suites) > 1:  # one folder per suite: an earlier report's files at the top go
        try:
            clear_report(args.out, keep=frozenset(dirs.values()))
        except OSError as exc:
            raise SeqbenchError(f"report: --out {args.out}: cannot write there: "
                                f"{exc.strerror or exc}") from None
    for name, suite_text, df, plan, points in suites:
        out = Path(args.out) if len(suites) == 1 else Path(args.out) / dirs[str(name)]
        text, files = write_report(df, out, suite=str(name), suite_text=suite_text,
                                   formats=formats, plots=not args.no_plots, plan=plan,
                                   points=points)
        print(text)
        html = [f for f in files if f.name == "report.html"]
        print(f"\nwrote {len(files)} files to {out}"
              + (f"; open {html[0]}" if html else ""))
        print()
    if len(suites) > 1:
        (Path(args.out) / MANIFEST).write_text(json.dumps({"suites": list(dirs.values())}))
    return 0


def _cmd_compare(args) -> int:
    from .report import check_alpha, compare, compare_text, load_results

    check_alpha(args.alpha)
    if args.out is not None:  # before the work: a bad --out fails first
        _check_out_file(args.out)
    suite_b = args.suite_b if args.suite_b is not None else args.suite
    a = load_results(args.a, args.suite)
    b = load_results(args.b, suite_b)
    for path, df, suite in ((args.a, a, args.suite), (args.b, b, suite_b)):
        if df.empty and not df.attrs.get("not_ok"):
            raise SeqbenchError(f"compare: no finished results in {path}"
                                + (f" for suite {suite!r}" if suite else ""))
    cmp = compare(a, b, alpha=args.alpha)
    print(compare_text(cmp, str(args.a), str(args.b), changed_only=args.changed))
    for side, path, df in (("A", args.a, a), ("B", args.b, b)):
        if df.attrs.get("incomplete"):
            print(f"{side} ({path}): {df.attrs['incomplete']}")
    if args.out:
        try:
            cmp.to_csv(args.out, index=False)
        except OSError as exc:
            raise SeqbenchError(f"compare: --out {args.out}: cannot write: "
                                f"{exc.strerror or exc}") from None
        print(f"wrote {args.out}")
    return 0


def _check_out_file(out: str) -> None:
    """A path a CSV can be written to: not empty, not a directory, in a directory that
    exists."""
    path = Path(out)
    if not out:
        raise SeqbenchError("compare: --out: expected a file path, got ''")
    if path.is_dir():
        raise SeqbenchError(f"compare: --out {out}: expected a file path, got a directory")
    if not path.parent.is_dir():
        raise SeqbenchError(f"compare: --out {out}: no such directory {path.parent}")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with a usage error as one line that says where the usage is,
    and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="seqbench",
        description="Benchmark sequence models on long-range-dependency tasks.",
    )
    p.add_argument("--version", action="version", version=f"seqbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a suite (a file, or a shipped suite by name) and print "
                       "its results table",
                       description="Run every job of a suite (tasks x models x seeds) not yet in "
                       "the store, then print the results table. Finished jobs are skipped on a "
                       "rerun. Exit status: 0 when every job ran to a result (ok, skipped, "
                       "timeout or diverged), 1 when a job of the suite is stored as failed "
                       "(raised an error, or its worker died; in this run or an earlier one), "
                       "2 for bad input (nothing run), 130 on Ctrl-C or SIGTERM, 141 when the "
                       "output pipe closed (finished jobs kept).")
    r.add_argument("suite", help="suite TOML file (e.g. my_suite.toml), or the name of a "
                   "suite shipped with seqbench (smoke, longrange, ...: seqbench list suites)")
    r.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")
    r.add_argument("--executor", default="local",
                   help="where jobs run: local (default: worker processes on this machine), "
                   "inline (in this process, for debugging), dask-local:N (a Dask cluster of N "
                   "processes on this machine), dask://HOST:PORT (an existing Dask scheduler)")
    r.add_argument("-j", "--jobs", type=int, default=None,
                   help="CPU worker processes of the local executor (default: one per core, "
                   "less one per GPU slot on a machine with GPUs, at least 1)")
    r.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    r.add_argument("--gpu-slots", type=int, default=1, metavar="K",
                   help="torch jobs run at the same time on each GPU (default 1)")
    r.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="per-job time limit, overriding the suite's [budget] timeout")
    r.add_argument("--stack", type=int, default=1, metavar="K",
                   help="train up to K LSTM jobs of one shape (seeds of one configuration, "
                   "or configurations differing only in lr, weight_decay, clip_norm, "
                   "patience, max_steps, max_epochs, forget_bias) together as one stacked "
                   "module in one worker (one row per job still; a stack's time limit is "
                   "the per-job limit x its jobs; default 1: off)")
    r.add_argument("--force", action="store_true", help="rerun every job, even finished ones")
    r.add_argument("--retry-failed", action="store_true",
                   help="rerun jobs stored as failed, timeout or diverged")
    r.add_argument("-q", "--quiet", action="store_true", help="no per-job lines")
    r.set_defaults(func=_cmd_run)

    ls = sub.add_parser("list", help="list models, tasks or shipped suites",
                        description="List registered models or tasks (built-ins and plugins) "
                        "with their parameters and defaults (a parameter with no default "
                        "is shown by its name alone: it is required), or the suites shipped "
                        "with seqbench (run one by name: seqbench run smoke). With no "
                        "argument, all three.")
    ls.add_argument("what", nargs="?", choices=("models", "tasks", "suites"),
                    metavar="{models,tasks,suites}")
    ls.set_defaults(func=_cmd_list)

    res = sub.add_parser("results", help="print the results table from a store",
                         description="Print the results table (task settings x models, mean of "
                         "the primary metric over seeds) for each suite in the store: the "
                         "suite's jobs as of its latest run, under its current labels.")
    res.add_argument("--store", default=DEFAULT_STORE,
                     help=f"SQLite store (default {DEFAULT_STORE})")
    res.add_argument("--suite", default=None, help="only this suite (by name)")
    res.add_argument("--errors", action="store_true", help="list jobs that did not finish ok")
    res.set_defaults(func=_cmd_results)

    rep = sub.add_parser("report", help="tables, memory horizons, plots and an HTML report",
                         description="Report a store's results: the memory horizon per model "
                         "and lag-swept task family first, then task settings x models (mean "
                         "with a 95% t interval over seeds, normalised score, ranks) and a "
                         "Friedman/Nemenyi test over settings; writes Markdown, CSV, LaTeX and "
                         "HTML tables, PNG and SVG plots and one self-contained report.html.")
    rep.add_argument("--store", default=DEFAULT_STORE,
                     help=f"SQLite store (default {DEFAULT_STORE})")
    rep.add_argument("--suite", default=None, help="only this suite (by name; default: every "
                     "suite, each in a subfolder of --out when there are several)")
    rep.add_argument("--out", default="results/report", help="output folder "
                     "(default results/report)")
    rep.add_argument("--format", default="md,csv,tex,html",
                     help="comma-separated table formats: md, csv, tex, html (default all)")
    rep.add_argument("--no-plots", action="store_true", help="write no figures")
    rep.set_defaults(func=_cmd_report)

    cmp = sub.add_parser("compare", help="what changed between two result sets",
                         description="Compare two stores, or a store and a CSV written by "
                         "seqbench report (runs.csv or cells.csv), one suite each, per task "
                         "setting and model: the difference B - A, a paired t-test over the "
                         "seeds both share when they share at least 2 (Welch's t-test on all "
                         "seeds otherwise) and which cells got better or worse. A cell whose "
                         "jobs ran on one side but none finished ok (failed, timeout, "
                         "diverged) is listed as 'not ok' on that side (stores say why; CSVs "
                         "hold finished runs only). An input holding several suites needs "
                         "--suite; --suite-b picks B's suite when it differs.")
    cmp.add_argument("a", help="store or CSV (the reference)")
    cmp.add_argument("b", help="store or CSV (compared against A)")
    cmp.add_argument("--suite", default=None, help="this suite (by name), from both inputs "
                     "(from A only when --suite-b is given); needed when an input holds "
                     "several")
    cmp.add_argument("--suite-b", default=None, metavar="SUITE",
                     help="this suite from B (default: --suite): compare two suites, such "
                     "as two versions of one held in one store")
    cmp.add_argument("--alpha", type=float, default=0.05,
                     help="significance level, in (0, 1) (default 0.05)")
    cmp.add_argument("--changed", action="store_true",
                     help="the table lists only the cells whose verdict is not 'same' (the "
                     "summary still counts those; --out still writes every cell)")
    cmp.add_argument("--out", default=None, help="also write the comparison as CSV here")
    cmp.set_defaults(func=_cmd_compare)
    return p


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: workers stopped, finished jobs kept."""


def _on_sigterm(signum, frame):
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except SeqbenchError as exc:
        print(f"seqbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        where = ""
        if getattr(args, "suite_name", None):  # a run: say where they are and how to go on
            where = (f" {args.store} (the table: seqbench results --store {args.store} "
                     f"--suite {args.suite_name}; to finish, run the same command again)")
        print(f"seqbench: {what}; finished jobs are kept in the store{where}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`seqbench run ... | head`): stop as a
        # program killed by SIGPIPE would (the executor's workers are stopped on the way
        # out, finished jobs are kept), without a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
