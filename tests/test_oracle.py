"""The corpus comparator (tests/oracle/compare.py) sees what it must and nothing else: a column
order is not a difference; a changed value, a lost large-object comment and an invalid index are."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rdsmigrate.localpg import LocalCluster
from tests.conftest import create_database, drop_database, master, superuser_dsn
from tests.oracle import compare

pytestmark = [pytest.mark.pg]

SCHEMA = """
CREATE TABLE "Odd name" (id int PRIMARY KEY, {cols});
CREATE TABLE nothing ();
INSERT INTO nothing DEFAULT VALUES;
CREATE SEQUENCE s; SELECT nextval('s');
SELECT lo_from_bytea(777, 'body');
COMMENT ON LARGE OBJECT 777 IS 'a comment';
"""


@pytest.fixture
def two(pg_source: LocalCluster) -> Iterator[tuple[str, str]]:
    a, b = create_database(pg_source, "oracle_a"), create_database(pg_source, "oracle_b")
    with master(pg_source, a) as conn:
        conn.execute(SCHEMA.format(cols="x text, y numeric"))
        conn.execute("""INSERT INTO "Odd name" VALUES (1, 'one', 1.5), (2, NULL, 2)""")
    with master(pg_source, b) as conn:
        conn.execute(SCHEMA.format(cols="y numeric, x text"))
        conn.execute("""INSERT INTO "Odd name" (id, x, y) VALUES (1, 'one', 1.5), (2, NULL, 2)""")
    yield a, b
    drop_database(pg_source, a)
    drop_database(pg_source, b)


def _diff(cluster: LocalCluster, a: str, b: str) -> dict[str, str]:
    pg_dump = cluster.bindir / "pg_dump"
    return compare.differences(compare.image(superuser_dsn(cluster, a), pg_dump),
                               compare.image(superuser_dsn(cluster, b), pg_dump))


def test_column_order_is_no_difference_but_values_comments_and_validity_are(
    two: tuple[str, str], pg_source: LocalCluster,
) -> None:
    a, b = two
    differences = _diff(pg_source, a, b)
    # The column order shows in the schema only; the rows, keyed by name, are equal.
    assert set(differences) == {"schema TABLE public.Odd name"}

    with master(pg_source, b) as conn:
        conn.execute("""UPDATE "Odd name" SET x = 'One' WHERE id = 1""")
        conn.execute("INSERT INTO nothing DEFAULT VALUES")
        conn.execute("COMMENT ON LARGE OBJECT 777 IS NULL")
        conn.execute("SELECT setval('s', 5)")
    with master(pg_source, a) as conn:
        conn.execute("""CREATE UNIQUE INDEX broken ON "Odd name" (x)""")
    with master(pg_source, b) as conn:
        conn.execute("""INSERT INTO "Odd name" (id, x, y) VALUES (3, 'One', 0)""")
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute("""CREATE UNIQUE INDEX CONCURRENTLY broken ON "Odd name" (x)""")
    differences = _diff(pg_source, a, b)
    assert {'rows public."Odd name"', "rows public.nothing", "lo 777 comment",
            "sequence public.s", 'valid index public.broken'} <= differences.keys()
    assert "differs" in differences["valid index public.broken"]
