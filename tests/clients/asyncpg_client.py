"""asyncpg against a server: typed parameters (its binary format), dates to 9999-12-31 (which
asyncpg sends as the binary date infinity), prepared statements, rows and errors by SQLSTATE.
Passes against PostgreSQL 15 too. Connection from the PG* environment variables; exits
non-zero on the first mismatch.

    PGHOST=127.0.0.1 PGPORT=5433 PGUSER=tastedb PGPASSWORD=… PGDATABASE=tastedb \\
        python3 tests/clients/asyncpg_client.py
"""

import asyncio
import datetime
import sys

import asyncpg


def check(label, got, expected):
    if got != expected:
        print(f"{label}: got {got!r}, expected {expected!r}")
        sys.exit(1)


async def main():
    conn = await asyncpg.connect()  # PG* variables
    check("float8 parameter", await conn.fetchval("SELECT $1::float8 * 2", 1.25), 2.5)
    check("int8 parameter", await conn.fetchval("SELECT $1::int8 + 1", 41), 42)
    last = datetime.date(9999, 12, 31)
    check("last date", await conn.fetchval("SELECT $1::date", last), last)
    first = datetime.date(1, 1, 1)
    check("first date", await conn.fetchval("SELECT $1::date", first), first)
    await conn.execute("DROP TABLE IF EXISTS apg_items")
    await conn.execute(
        "CREATE TABLE apg_items (id BIGINT PRIMARY KEY, title TEXT, price DOUBLE PRECISION, day DATE, ts TIMESTAMP)"
    )
    rows = [
        (1, "one", 1.5, datetime.date(2026, 1, 3), datetime.datetime(2026, 1, 3, 12, 30)),
        (2, None, None, last, None),
    ]
    await conn.executemany("INSERT INTO apg_items VALUES ($1, $2, $3, $4, $5)", rows)
    by_id = await conn.prepare("SELECT id, title, price, day, ts FROM apg_items WHERE id = $1")
    for row in rows:
        check(f"row {row[0]}", tuple(await by_id.fetchrow(row[0])), row)
    check("days after", await conn.fetchval("SELECT count(*) FROM apg_items WHERE day > $1", datetime.date(2026, 1, 3)), 1)
    try:
        await conn.execute("INSERT INTO apg_items VALUES (1, 'again', NULL, NULL, NULL)")
        check("duplicate key accepted", True, False)
    except asyncpg.UniqueViolationError:
        pass
    await conn.execute("DROP TABLE apg_items")
    await conn.close()
    print("asyncpg: all checks passed")


asyncio.run(main())
