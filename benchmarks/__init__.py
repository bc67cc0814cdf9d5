"""seqbench's benchmarks (run by ``nox -s perf``; not tests)."""
