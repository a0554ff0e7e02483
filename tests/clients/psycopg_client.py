"""psycopg 3 against a running TasteDB server: typed parameters, executemany, COPY in and
out, errors with their SQLSTATE, and cancel(). Connection settings come from PGHOST, PGPORT, PGUSER,
PGPASSWORD and PGDATABASE. Exits non-zero on the first mismatch."""

import datetime
import sys
import threading
import time

import psycopg
from psycopg import errors


def check(label, got, expected):
    if got != expected:
        sys.exit(f"{label}: expected {expected!r}, got {got!r}")


def main():
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py_events")
        conn.execute(
            "CREATE TABLE py_events (id BIGINT PRIMARY KEY, user_id TEXT NOT NULL, "
            "weight DOUBLE, ts TIMESTAMP)"
        )
        with conn.cursor() as cur:
            # parameters, server-side bound (extended protocol)
            start = datetime.datetime(2024, 5, 1, 12, 0, 0)
            cur.execute(
                "INSERT INTO py_events VALUES (%s, %s, %s, %s)", (1, "u1", 0.5, start)
            )
            check("rowcount of one insert", cur.rowcount, 1)
            cur.executemany(
                "INSERT INTO py_events VALUES (%s, %s, %s, %s)",
                [(i, f"u{i % 3}", i * 1.5, start + datetime.timedelta(hours=i)) for i in range(2, 12)],
            )
            cur.execute("SELECT count(*), sum(weight) FROM py_events WHERE user_id = %s", ("u1",))
            check("count and sum for u1", cur.fetchone(), (4, 0.5 + 4 * 1.5 + 7 * 1.5 + 10 * 1.5))
            cur.execute("SELECT ts FROM py_events WHERE id = %s", (3,))
            check("timestamp round trip", cur.fetchone()[0], start + datetime.timedelta(hours=3))

            # COPY FROM STDIN, row by row, then COPY TO STDOUT
            with cur.copy("COPY py_events (id, user_id, weight) FROM STDIN") as copy:
                for i in range(100, 110):
                    copy.write_row((i, "copied", float(i)))
            cur.execute("SELECT count(*) FROM py_events WHERE user_id = 'copied'")
            check("rows after COPY", cur.fetchone()[0], 10)
            out = []
            with cur.copy(
                "COPY (SELECT id, user_id FROM py_events WHERE id >= 108 ORDER BY id) TO STDOUT"
            ) as copy:
                for row in copy.rows():
                    out.append(row)
            check("COPY TO STDOUT", out, [("108", "copied"), ("109", "copied")])

            # errors carry SQLSTATE; the connection keeps working
            try:
                cur.execute("INSERT INTO py_events VALUES (%s, %s, %s, %s)", (1, "dup", 1.0, None))
                sys.exit("duplicate key was accepted")
            except errors.UniqueViolation:
                pass
            try:
                cur.execute("SELECT * FROM no_such_table")
                sys.exit("missing table was accepted")
            except errors.UndefinedTable:
                pass
            cur.execute("SELECT count(*) FROM py_events")
            check("count after errors", cur.fetchone()[0], 21)

        # a transaction block, as drivers open one when autocommit is off
    with psycopg.connect() as conn:
        conn.execute("INSERT INTO py_events VALUES (500, 'tx', 1.0, NULL)")
        conn.commit()
        check("row committed in a block",
              conn.execute("SELECT user_id FROM py_events WHERE id = 500").fetchone(), ("tx",))
    check_cancel()
    print("psycopg: all checks passed")


def check_cancel():
    """conn.cancel() (the protocol's CancelRequest) stops a runaway query with
    QueryCanceled within a second; the connection goes on."""
    with psycopg.connect(autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        try:
            conn.execute("SELECT count(*) FROM generate_series(1, 100000000000)")
            sys.exit("runaway query was not cancelled")
        except errors.QueryCanceled as e:
            check("cancel message", str(e).strip(), "canceling statement due to user request")
        elapsed = time.monotonic() - started
        if elapsed > 10:
            sys.exit(f"cancel took {elapsed:.1f} s")
        check("query after cancel", conn.execute("SELECT 1").fetchone(), (1,))


if __name__ == "__main__":
    main()
