"""asyncpg against a server: typed parameters (its binary format), dates to 9999-12-31 (which
asyncpg sends as the binary date infinity), arrays (which make asyncpg introspect their
types), prepared statements, binary COPY both ways
(`copy_records_to_table`, `copy_from_table(format='binary')`, `copy_to_table`), rows and
errors by SQLSTATE.
Passes against PostgreSQL 15 too. Connection from the PG* environment variables; exits
non-zero on the first mismatch.

    PGHOST=127.0.0.1 PGPORT=5433 PGUSER=tastedb PGPASSWORD=… PGDATABASE=tastedb \\
        python3 tests/clients/asyncpg_client.py
"""

import asyncio
import datetime
import io
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
    # arrays make asyncpg introspect their types first
    check("int array", await conn.fetchval("SELECT ARRAY[1, 2, 3]"), [1, 2, 3])
    check("float4 array (a vector's form)", await conn.fetchval("SELECT CAST(ARRAY[0.5, 1.5] AS REAL[])"), [0.5, 1.5])
    check("text array", await conn.fetchval("SELECT ARRAY['a', NULL]"), ["a", None])
    if "TasteDB" in await conn.fetchval("SELECT version()"):
        # a vector column (PostgreSQL 15 here has no vector type)
        await conn.execute("DROP TABLE IF EXISTS apg_vectors")
        await conn.execute("CREATE TABLE apg_vectors (k TEXT PRIMARY KEY, e VECTOR(3))")
        await conn.execute("INSERT INTO apg_vectors VALUES ('a', '[1, 2, 3]')")
        check("vector column", [tuple(r) for r in await conn.fetch("SELECT k, e FROM apg_vectors")], [("a", [1.0, 2.0, 3.0])])
        await conn.execute("DROP TABLE apg_vectors")
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
    copied = [
        (3, "three", 2.5, datetime.date(2026, 2, 1), datetime.datetime(2026, 2, 1, 8, 0, 0, 250000)),
        (4, None, None, None, None),
    ]
    check("binary COPY in", await conn.copy_records_to_table("apg_items", records=copied), "COPY 2")
    for row in copied:
        check(f"copied row {row[0]}", tuple(await by_id.fetchrow(row[0])), row)
    out = io.BytesIO()
    check("binary COPY out", await conn.copy_from_table("apg_items", output=out, format="binary"), "COPY 4")
    check("PGCOPY signature", out.getvalue()[:11], b"PGCOPY\n\xff\r\n\x00")
    empty = io.BytesIO()
    check(
        "binary COPY out of no rows",
        await conn.copy_from_query("SELECT * FROM apg_items WHERE id < 0", output=empty, format="binary"),
        "COPY 0",
    )
    check("no rows: header and trailer", empty.getvalue(), b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff")
    await conn.execute("DROP TABLE IF EXISTS apg_copy")
    await conn.execute(
        "CREATE TABLE apg_copy (id BIGINT PRIMARY KEY, title TEXT, price DOUBLE PRECISION, day DATE, ts TIMESTAMP)"
    )
    out.seek(0)
    check("binary COPY of that output back in", await conn.copy_to_table("apg_copy", source=out, format="binary"), "COPY 4")
    same = await conn.fetchval(
        "SELECT count(*) FROM apg_items i JOIN apg_copy c ON c.id = i.id "
        "WHERE c.title IS NOT DISTINCT FROM i.title AND c.price IS NOT DISTINCT FROM i.price "
        "AND c.day IS NOT DISTINCT FROM i.day AND c.ts IS NOT DISTINCT FROM i.ts"
    )
    check("round trip", same, 4)
    try:
        await conn.copy_to_table("apg_copy", source=io.BytesIO(b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\x00\x02"), format="binary")
        check("truncated binary COPY accepted", True, False)
    except asyncpg.BadCopyFileFormatError:
        pass
    await conn.execute("DROP TABLE apg_copy")
    await conn.execute("DROP TABLE apg_items")
    await conn.close()
    print("asyncpg: all checks passed")


asyncio.run(main())
