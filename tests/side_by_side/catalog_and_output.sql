-- psql against PostgreSQL 15 and TasteDB: tables and their keys in the catalog, how values
-- print, transaction blocks, prepared statements, cursors and error codes.
-- Chunks are separated by blank lines; a chunk that starts with "-- differs:" is known to
-- differ (the reason follows; docs/compatibility.md lists them), every other must print
-- exactly what PostgreSQL prints.
CREATE TABLE sbs_items (item_id BIGINT PRIMARY KEY, title TEXT NOT NULL, price DOUBLE PRECISION, added TIMESTAMP);

INSERT INTO sbs_items VALUES (1, 'one', 2, '2026-01-03 12:00:00'), (2, 'two', 0.1, '2026-01-03 12:00:00.5'), (3, 'three', NULL, NULL);

SELECT * FROM sbs_items ORDER BY item_id;

SELECT 1 + 1, count(*), sum(price), max(title) FROM sbs_items;

SELECT CAST('Infinity' AS DOUBLE PRECISION) AS inf, CAST('-Infinity' AS DOUBLE PRECISION) AS ninf, CAST('NaN' AS DOUBLE PRECISION) AS nan, CAST('-0' AS DOUBLE PRECISION) AS negzero, CAST(1e20 AS DOUBLE PRECISION) AS big, CAST(1.5e-7 AS DOUBLE PRECISION) AS small;

-- differs: literal types. PostgreSQL reads -0.0 as a numeric (no negative zero), TasteDB as a double, whose sign the cast keeps.
SELECT CAST(-0.0 AS DOUBLE PRECISION) AS negzero;

\d sbs_items

\d+ sbs_items

\di

\dt

SELECT r.rolname, r.rolsuper, r.rolcanlogin FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.relname = 'sbs_items';

SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname IN ('sbs_items', 'sbs_items_pkey') ORDER BY relname;

SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sbs_items';

SELECT c.conname, c.contype, c.conkey, i.indisprimary, i.indisunique, i.indnatts FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid JOIN pg_class t ON t.oid = c.conrelid WHERE t.relname = 'sbs_items';

SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid WHERE t.relname = 'sbs_items';

-- differs: sizes. PostgreSQL counts 8 kB pages from the first row; TasteDB counts the bytes RocksDB has flushed to files, 0 until its memtable is flushed.
\dt+ sbs_items

BEGIN;
SAVEPOINT a;
SELECT 1 AS inside;
ROLLBACK TO SAVEPOINT a;
RELEASE SAVEPOINT a;
COMMIT;

COPY (SELECT item_id, title, price, added FROM sbs_items ORDER BY item_id) TO STDOUT;

COPY (SELECT item_id, price, added FROM sbs_items ORDER BY item_id) TO STDOUT WITH (FORMAT csv, HEADER true);

COPY (SELECT CAST('Infinity' AS DOUBLE PRECISION), CAST('-0' AS DOUBLE PRECISION), CAST(1e20 AS DOUBLE PRECISION), CAST(0.1 AS REAL)) TO STDOUT;

PREPARE typed(int, text) AS SELECT $1 + 1 AS next, $2 || '!' AS shout;
EXECUTE typed(41, 'hi');
DEALLOCATE typed;

PREPARE by_id(bigint) AS SELECT title FROM sbs_items WHERE item_id = $1;
EXECUTE by_id(2);
DEALLOCATE by_id;
EXECUTE by_id(2);

BEGIN;
DECLARE c CURSOR FOR SELECT item_id FROM sbs_items ORDER BY item_id;
FETCH 2 FROM c;
FETCH FROM c;
FETCH c;
CLOSE c;
COMMIT;

BEGIN;
DECLARE c CURSOR FOR SELECT item_id FROM sbs_items ORDER BY item_id;
MOVE c;
FETCH c;
MOVE FORWARD ALL IN c;
FETCH c;
MOVE 5 FROM c;
CLOSE c;
COMMIT;

SELECT 1 IS NOT DISTINCT FROM 1 AND false AS answer, 2 IS DISTINCT FROM 3 AND true OR false AS other;

SELECT * FROM no_such_table;

SELECT 1 / 0;

INSERT INTO sbs_items VALUES (1, 'again', NULL, NULL);

SELECT CAST('x' AS INTEGER);

INSERT INTO sbs_items (item_id) VALUES (9);

SAVEPOINT outside;

COMMIT;

DROP TABLE sbs_items;

DROP TABLE sbs_items;
