"""Research benches: one-off measurements whose results are recorded in ``eval/README.md`` and the
root README, kept runnable so a result can be re-checked. Nothing here is imported at run time; the
benchmarks users run are in ``eval/`` (see ``research/README.md``)."""
