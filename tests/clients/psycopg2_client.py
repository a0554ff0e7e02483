"""psycopg2 (and SQLAlchemy's `postgresql+psycopg2` dialect on it) against a server:
parameters, `executemany`, `copy_expert` both ways, its transaction per connection, errors by
SQLSTATE, reflection. Passes against PostgreSQL 15 too. Connection from the PG* environment
variables; exits non-zero on the first mismatch.

    PGHOST=127.0.0.1 PGPORT=5433 PGUSER=tastedb PGPASSWORD=… PGDATABASE=tastedb \\
        python3 tests/clients/psycopg2_client.py
"""

import datetime
import io
import os
import sys

import psycopg2
import psycopg2.errors
import sqlalchemy as sa


def check(label, got, expected):
    if got != expected:
        print(f"{label}: got {got!r}, expected {expected!r}")
        sys.exit(1)


def driver():
    conn = psycopg2.connect("")  # PG* variables
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS pg2_items")
    cur.execute("CREATE TABLE pg2_items (id BIGINT PRIMARY KEY, title TEXT, price DOUBLE PRECISION, added TIMESTAMP)")
    cur.executemany(
        "INSERT INTO pg2_items VALUES (%s, %s, %s, %s)",
        [(1, "one", 2.0, datetime.datetime(2026, 1, 3, 12)), (2, None, float("inf"), None)],
    )
    cur.execute("SELECT id, title, price, added FROM pg2_items WHERE id = %s", (1,))
    check("row", cur.fetchone(), (1, "one", 2.0, datetime.datetime(2026, 1, 3, 12)))
    cur.execute("SELECT price FROM pg2_items WHERE id = %(id)s", {"id": 2})
    check("Infinity", cur.fetchone(), (float("inf"),))
    cur.copy_expert("COPY pg2_items FROM STDIN", io.StringIO("3\tthree\t0.5\t2026-01-04 00:00:00\n"))
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT id, title, price FROM pg2_items ORDER BY id) TO STDOUT", out)
    check("COPY TO STDOUT", out.getvalue(), "1\tone\t2\n2\t\\N\tInfinity\n3\tthree\t0.5\n")
    try:
        cur.execute("INSERT INTO pg2_items VALUES (1, 'again', NULL, NULL)")
        check("duplicate key accepted", True, False)
    except psycopg2.errors.UniqueViolation as e:
        check("duplicate key SQLSTATE", e.pgcode, "23505")
    # psycopg2's default: a transaction per connection, ended by commit
    conn.autocommit = False
    cur.execute("SELECT count(*) FROM pg2_items")
    check("count in a transaction", cur.fetchone(), (3,))
    conn.commit()
    conn.close()


def sqlalchemy_on_psycopg2():
    env = os.environ
    url = sa.engine.URL.create(
        "postgresql+psycopg2",
        username=env["PGUSER"],
        password=env.get("PGPASSWORD"),
        host=env["PGHOST"],
        port=int(env["PGPORT"]),
        database=env["PGDATABASE"],
    )
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        check("text()", conn.execute(sa.text("SELECT CAST(:x AS BIGINT) * 2"), {"x": 21}).scalar(), 42)
    check("reflected key", sa.inspect(engine).get_pk_constraint("pg2_items")["constrained_columns"], ["id"])
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE pg2_items"))


driver()
sqlalchemy_on_psycopg2()
print("psycopg2: all checks passed")
