"""The benchmark of issue 4: ``rdsmigrate copy`` and ``verify`` beside what users would otherwise
run (pg_dump/pg_restore, pgcopydb, and the raw limit of psql pipes), on one machine, in one run.

Run it as ``make bench`` or ``python -m bench --help``. It starts two throwaway clusters, builds
the dataset, times every contender in turns, checks every run independently, prints a table and
writes the same as JSON under ``bench/results/``. Performance is asserted by this report, never
by a unit test with a time limit.
"""
