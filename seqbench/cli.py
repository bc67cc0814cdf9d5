"""The ``seqbench`` command.

User errors (a malformed suite, an unknown model or parameter, a bad path) print one
line, ``seqbench: error: ...``, and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import sys

from . import __version__, registry
from .errors import SeqbenchError
from .store import DEFAULT_STORE


def _cmd_run(args) -> int:
    from .report import render_table, summary_table
    from .runner import make_executor, run_suite
    from .store import Store, check_store_path
    from .suite import load_suite

    suite = load_suite(args.suite)       # validate everything before touching the store
    suite.jobs()
    executor = make_executor(args.executor, jobs=args.jobs, threads=args.threads)
    check_store_path(args.store)
    with Store(args.store) as store:
        summary = run_suite(suite, store, executor, force=args.force,
                            retry_failed=args.retry_failed, log=None if args.quiet else print)
        df = store.frame(suite.name)
    hashes = {j["hash"] for j in suite.jobs()}
    df = df[df["hash"].isin(hashes)]
    print()
    print(render_table(summary_table(df)))
    bad = {s: summary.get(s, 0) for s in ("failed", "timeout", "diverged") if summary.get(s)}
    n_seeds = len(suite.seeds)
    print(f"\nmean over {n_seeds} seed{'s' if n_seeds > 1 else ''}; "
          f"ran {summary['ran']} job(s), {summary['already_done']} already done; store: {args.store}")
    if bad:
        print("not ok: " + ", ".join(f"{v} {k}" for k, v in bad.items())
              + f" (see why: seqbench results --store {args.store} --errors)")
    return 0


def _cmd_list(args) -> int:
    reg = registry.models if args.what == "models" else registry.tasks
    for name in reg.names():
        try:
            cls = reg.get(name)
        except SeqbenchError as exc:
            print(f"{name}: {exc}")
            continue
        doc = (inspect.getdoc(cls) or "").splitlines()
        head = f"{name}: {doc[0] if doc else cls.__name__}"
        if args.what == "tasks":
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
            print("    " + ", ".join(f"{k}={v!r}" for k, v in params.items()))
    return 0


def _cmd_results(args) -> int:
    from .report import render_table, summary_table
    from .store import Store

    with Store(args.store, create=False) as store:
        df = store.frame(args.suite)
    if args.errors:
        bad = df[df["status"] != "ok"]
        if bad.empty:
            print("every job finished ok")
        for _, r in bad.iterrows():
            first = (r["error"] or "").splitlines()[0] if r["error"] else ""
            print(f"{r['status']}: {r['model_label']} on {r['task_label']} "
                  f"{r['task_sweep']} seed {r['seed']}: {first}")
        return 0
    for suite_name, sub in df.groupby("suite", sort=False):
        print(f"suite {suite_name}")
        print(render_table(summary_table(sub)))
        print()
    if df.empty:
        print("(no results)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqbench",
        description="Benchmark sequence models on long-range-dependency tasks.",
    )
    p.add_argument("--version", action="version", version=f"seqbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a suite file and print its results table",
                       description="Run every job of a suite (tasks x models x seeds) not yet in "
                       "the store, then print the results table. Finished jobs are skipped on a "
                       "rerun.")
    r.add_argument("suite", help="suite TOML file, e.g. tasks/smoke.toml")
    r.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")
    r.add_argument("--executor", default="inline", help="where jobs run: inline (default)")
    r.add_argument("-j", "--jobs", type=int, default=None, help="worker processes")
    r.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    r.add_argument("--force", action="store_true", help="rerun every job, even finished ones")
    r.add_argument("--retry-failed", action="store_true",
                   help="rerun jobs stored as failed, timeout or diverged")
    r.add_argument("-q", "--quiet", action="store_true", help="no per-job lines")
    r.set_defaults(func=_cmd_run)

    ls = sub.add_parser("list", help="list models or tasks with their parameters",
                        description="List registered models or tasks (built-ins and plugins) "
                        "with their parameters and defaults.")
    ls.add_argument("what", choices=("models", "tasks"))
    ls.set_defaults(func=_cmd_list)

    res = sub.add_parser("results", help="print the results table from a store",
                         description="Print the results table (task settings x models, mean of "
                         "the primary metric over seeds) for each suite in the store.")
    res.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")
    res.add_argument("--suite", default=None, help="only this suite (by name)")
    res.add_argument("--errors", action="store_true", help="list jobs that did not finish ok")
    res.set_defaults(func=_cmd_results)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SeqbenchError as exc:
        print(f"seqbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqbench: interrupted; finished jobs are kept in the store", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
