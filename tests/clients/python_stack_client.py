"""The Python data stack against a server: SQLAlchemy 2 with psycopg 3 (its recommended
URL), psycopg's own transactions and prepared statements, typed parameters in casts, the
catalog helpers drivers call, SQLAlchemy's reflection, and pandas. Connection from the PG* environment variables.

Runs the same against PostgreSQL 15 (every expectation here was checked there) and TasteDB;
exits non-zero on the first mismatch.

    PGHOST=127.0.0.1 PGPORT=5433 PGUSER=tastedb PGPASSWORD=… PGDATABASE=tastedb \\
        python3 tests/clients/python_stack_client.py
"""

import datetime
import os
import sys

import pandas as pd
import psycopg
import sqlalchemy as sa
from psycopg import errors


def check(label, got, expected):
    if got != expected:
        print(f"{label}: got {got!r}, expected {expected!r}")
        sys.exit(1)


def fails_with(label, error_class, run):
    try:
        run()
    except error_class:
        return
    except Exception as e:  # noqa: BLE001 - the wrong class is the failure reported
        print(f"{label}: {type(e).__name__} {e}, expected {error_class.__name__}")
        sys.exit(1)
    print(f"{label}: no error, expected {error_class.__name__}")
    sys.exit(1)


def url():
    env = os.environ
    return sa.engine.URL.create(
        "postgresql+psycopg",
        username=env["PGUSER"],
        password=env.get("PGPASSWORD"),
        host=env["PGHOST"],
        port=int(env["PGPORT"]),
        database=env["PGDATABASE"],
    )


def psycopg_paths():
    with psycopg.connect(autocommit=True) as conn:
        # typed parameters in casts: the server describes $1 in the cast's type
        check(
            "casts",
            conn.execute(
                "SELECT %s::float8 * 2, %s::int8 + 1, %s::timestamp",
                (1.25, 41, datetime.datetime(2026, 1, 3, 12)),
            ).fetchone(),
            (2.5, 42, datetime.datetime(2026, 1, 3, 12)),
        )
        # output column names by PostgreSQL's rules
        cursor = conn.execute("SELECT 1, count(*), 2::float8, 3::float8 AS x, CASE WHEN true THEN 1 END")
        check("column names", [c.name for c in cursor.description], ["?column?", "count", "float8", "x", "case"])
        # asyncpg's first introspection query
        check(
            "current_setting, set_config",
            conn.execute(
                "SELECT current_setting('standard_conforming_strings'), set_config('jit', 'off', false)"
            ).fetchone(),
            ("on", "off"),
        )
        fails_with("unknown setting", errors.UndefinedObject, lambda: conn.execute("SELECT current_setting('nope')"))
        # the type lookup psycopg (and SQLAlchemy at connect) runs
        check("to_regtype", conn.execute("SELECT to_regtype('int4')::int").fetchone(), (23,))
        check("to_regtype unknown", conn.execute("SELECT to_regtype('hstore')").fetchone(), (None,))
        check(
            "pg_size_pretty",
            conn.execute("SELECT pg_size_pretty(%s::int8), pg_size_pretty(20970496::int8)", (10240,)).fetchone(),
            ("10 kB", "20 MB"),
        )
        check(
            "array(subquery)",
            conn.execute("SELECT ARRAY(SELECT x FROM (VALUES (3), (1), (2)) AS v(x) ORDER BY x)").fetchone(),
            ([1, 2, 3],),
        )
        # savepoints outside a block, unknown prepared statements, DISCARD ALL inside one
        fails_with("SAVEPOINT outside a block", errors.NoActiveSqlTransaction, lambda: conn.execute("SAVEPOINT s"))
        fails_with(
            "DECLARE outside a block",
            errors.NoActiveSqlTransaction,
            lambda: conn.execute("DECLARE c CURSOR FOR SELECT 1"),
        )
        fails_with("DEALLOCATE unknown", errors.InvalidSqlStatementName, lambda: conn.execute("DEALLOCATE nope"))
        conn.execute("DISCARD ALL")
    with psycopg.connect() as conn:
        # psycopg prepares a query on its 5th run, then sends DEALLOCATE ALL after ROLLBACK
        for n in range(8):
            check("prepared", conn.execute("SELECT %s::int8 + 1", (n,)).fetchone(), (n + 1,))
        conn.rollback()
        for n in range(8):
            check("prepared again", conn.execute("SELECT %s::int8 * 2", (n,)).fetchone(), (2 * n,))
        conn.execute("DEALLOCATE ALL")
        check("after DEALLOCATE ALL", conn.execute("SELECT %s::int8 * 2", (4,)).fetchone(), (8,))
        # nested transactions are savepoints
        with conn.transaction():
            with conn.transaction():
                conn.execute("SELECT 1")
            try:
                with conn.transaction():
                    conn.execute("SELECT 1")
                    raise RuntimeError("roll back to the savepoint")
            except RuntimeError:
                pass
            # a failed statement aborts the block until ROLLBACK TO its savepoint
            conn.execute("SAVEPOINT before_error")
            fails_with("error in a block", errors.UndefinedTable, lambda: conn.execute("SELECT * FROM no_such_table"))
            check("aborted block", conn.info.transaction_status, psycopg.pq.TransactionStatus.INERROR)
            conn.execute("ROLLBACK TO SAVEPOINT before_error")
            check("after ROLLBACK TO", conn.info.transaction_status, psycopg.pq.TransactionStatus.INTRANS)
            # the same over the extended protocol
            conn.execute("SAVEPOINT again")
            fails_with("error in a block", errors.UndefinedTable, lambda: conn.execute("SELECT * FROM nope"))
            conn.execute("ROLLBACK TO SAVEPOINT again", prepare=True)
            check("after prepared ROLLBACK TO", conn.info.transaction_status, psycopg.pq.TransactionStatus.INTRANS)
            check("block goes on", conn.execute("SELECT 2").fetchone(), (2,))
        # named (server-side) cursors: DECLARE, FETCH FORWARD n, CLOSE
        with conn.cursor(name="stack_cursor") as cursor:
            cursor.execute("SELECT x FROM generate_series(1, 5) AS s(x) ORDER BY x")
            check("cursor fetchmany", cursor.fetchmany(2), [(1,), (2,)])
            check("cursor fetchone", cursor.fetchone(), (3,))
            check("cursor fetchall", cursor.fetchall(), [(4,), (5,)])
        fails_with("FETCH unknown", errors.InvalidCursorName, lambda: conn.execute("FETCH 1 FROM nope"))
        conn.rollback()
        conn.execute("DECLARE c CURSOR FOR SELECT 1")
        fails_with("DECLARE twice", errors.DuplicateCursor, lambda: conn.execute("DECLARE c CURSOR FOR SELECT 2"))
        conn.rollback()
        fails_with("cursor gone with its block", errors.InvalidCursorName, lambda: conn.execute("FETCH 1 FROM c"))
        conn.rollback()
        conn.execute("BEGIN")
        fails_with("DISCARD ALL in a block", errors.ActiveSqlTransaction, lambda: conn.execute("DISCARD ALL"))
        conn.rollback()
        conn.execute("SAVEPOINT a")
        fails_with("RELEASE unknown", errors.InvalidSavepointSpecification, lambda: conn.execute("RELEASE SAVEPOINT b"))
        conn.rollback()
        conn.execute("SAVEPOINT a")
        conn.execute("SAVEPOINT b")
        conn.execute("RELEASE SAVEPOINT a")
        fails_with("released with a", errors.InvalidSavepointSpecification, lambda: conn.execute("ROLLBACK TO SAVEPOINT b"))
        conn.rollback()


def sqlalchemy_and_pandas():
    engine = sa.create_engine(url())
    with engine.connect() as conn:
        check("sqlalchemy select", conn.execute(sa.text("SELECT CAST(:x AS BIGINT) + 1"), {"x": 1}).scalar(), 2)
        conn.execute(sa.text("DROP TABLE IF EXISTS stack_t"))
        conn.commit()
    with engine.begin() as conn:
        nested = conn.begin_nested()
        conn.execute(sa.text("SELECT 1"))
        nested.rollback()
        with conn.begin_nested():
            conn.execute(sa.text("SELECT 2"))
    frame = pd.DataFrame(
        {
            "a": [1, 2, 3],
            "b": [1.5, 2.5, float("inf")],
            "c": ["x", "y", None],
            "d": pd.to_datetime(["2026-01-01 00:00:00", "2026-01-02 03:04:05", "2026-01-03 00:00:00"]),
        }
    )
    frame.to_sql("stack_t", engine, index=False)
    back = pd.read_sql("SELECT a, b, c, d FROM stack_t ORDER BY a", engine)
    check("to_sql round trip", back.to_dict("list"), frame.to_dict("list"))
    chunks = [len(c) for c in pd.read_sql("SELECT a FROM stack_t ORDER BY a", engine, chunksize=2)]
    check("chunksize", chunks, [2, 1])
    with engine.begin() as conn:
        recent = conn.execute(
            sa.text("SELECT count(*) FROM stack_t WHERE d >= :since"),
            {"since": datetime.datetime(2026, 1, 2)},
        ).scalar()
    check("datetime parameter", recent, 2)
    with engine.connect() as conn:
        check(
            "pg_get_serial_sequence",
            conn.execute(sa.text("SELECT pg_get_serial_sequence('stack_t', 'a')")).scalar(),
            None,
        )


def reflection():
    """SQLAlchemy's inspector and autoload, and the pandas paths built on them."""
    engine = sa.create_engine(url())
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS stack_r"))
        conn.execute(sa.text("CREATE TABLE stack_r (k TEXT, n BIGINT NOT NULL, x DOUBLE PRECISION, PRIMARY KEY (n, k))"))
        conn.execute(sa.text("INSERT INTO stack_r VALUES ('a', 1, 0.5), ('b', 2, NULL)"))
    inspector = sa.inspect(engine)
    check(
        "get_pk_constraint",
        inspector.get_pk_constraint("stack_r"),
        {"constrained_columns": ["n", "k"], "name": "stack_r_pkey", "comment": None, "dialect_options": {"postgresql_include": []}},
    )
    check("get_indexes", inspector.get_indexes("stack_r"), [])
    check("get_unique_constraints", inspector.get_unique_constraints("stack_r"), [])
    check("get_foreign_keys", inspector.get_foreign_keys("stack_r"), [])
    columns = [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns("stack_r")]
    check("get_columns", columns, [("k", "TEXT", False), ("n", "BIGINT", False), ("x", "DOUBLE PRECISION", True)])
    table = sa.Table("stack_r", sa.MetaData(), autoload_with=engine)
    check("autoload primary key", [c.name for c in table.primary_key.columns], ["n", "k"])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.k).where(table.c.n == 2)).all()
    check("select through the reflected table", rows, [("b",)])
    back = pd.read_sql_table("stack_r", engine)
    check("read_sql_table", sorted(back["k"].tolist()), ["a", "b"])
    replacement = pd.DataFrame({"k": ["z"], "v": [7]})
    replacement.to_sql("stack_r", engine, index=False, if_exists="replace")
    replacement.to_sql("stack_r", engine, index=False, if_exists="append")
    check("to_sql replace then append", pd.read_sql_table("stack_r", engine).to_dict("list"), {"k": ["z", "z"], "v": [7, 7]})
    # pandas' defaults: the DataFrame index becomes a column with a btree index
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS stack_i"))
    indexed = pd.DataFrame({"k": ["a", "b", "c"]}, index=pd.Index([10, 20, 30], name="pos"))
    indexed.to_sql("stack_i", engine)
    indexed.to_sql("stack_i", engine, if_exists="replace")
    check(
        "to_sql index as a btree index",
        [(i["name"], i["column_names"], i["unique"]) for i in sa.inspect(engine).get_indexes("stack_i")],
        [("ix_stack_i_pos", ["pos"], False)],
    )
    check("read_sql_table index_col", pd.read_sql_table("stack_i", engine, index_col="pos").to_dict(), indexed.to_dict())
    with engine.connect() as conn:
        one = conn.execute(sa.text("SELECT k FROM stack_i WHERE pos = :p"), {"p": 20}).scalar()
    check("lookup through the index", one, "b")


def orm_session():
    """SQLAlchemy's ORM: a session adds, changes and deletes objects in one transaction; a
    rolled-back session leaves nothing."""
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "stack_orm_items"
        id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(sa.Text)
        stock: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    class Note(Base):
        __tablename__ = "stack_orm_notes"
        id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
        title: Mapped[str] = mapped_column(sa.Text, unique=True)

    engine = sa.create_engine(url())
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Item(id=1, title="Alpha", stock=3), Item(id=2, title="Beta"), Item(id=3, title="Gamma", stock=9)])
        session.commit()
    with Session(engine) as session:
        item = session.get(Item, 2)
        item.stock = 5
        session.delete(session.get(Item, 3))
        session.commit()
    with Session(engine) as session:
        session.add(Item(id=4, title="Delta"))
        session.get(Item, 1).title = "changed"
        session.rollback()
    with Session(engine) as session:
        rows = [(i.id, i.title, i.stock) for i in session.scalars(sa.select(Item).order_by(Item.id))]
    check("ORM session add, update, delete, rollback", rows, [(1, "Alpha", 3), (2, "Beta", 5)])
    # keys the server makes (BIGSERIAL) come back through INSERT … RETURNING, in order
    with Session(engine) as session:
        notes = [Note(title=t) for t in ("n1", "n2", "n3")]
        session.add_all(notes)
        session.add(Note(title="n4"))
        session.commit()
        made = [(n.id, n.title) for n in notes]
    check("ORM keys made by the server", made, [(1, "n1"), (2, "n2"), (3, "n3")])
    with Session(engine) as session:
        session.add(Note(title="n1"))
        fails_with("UNIQUE constraint from the model", sa.exc.IntegrityError, session.commit)
    Base.metadata.drop_all(engine)


def main():
    psycopg_paths()
    sqlalchemy_and_pandas()
    reflection()
    orm_session()
    print("ok")


if __name__ == "__main__":
    main()
