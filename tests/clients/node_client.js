// node-postgres (`pg`) and `pg-copy-streams` against a running server: parameters, the types
// it parses (int8 as text, float8 with Infinity, timestamps, arrays), named prepared
// statements, COPY in and out, and errors by SQLSTATE. The same script passes against
// PostgreSQL 15. Run with PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE set:
//   node tests/clients/node_client.js
// Modules come from TASTEDB_NODE_MODULES or ~/.cache/tastedb-node/node_modules, where
// .ci/setup installs them. Exits non-zero on the first mismatch.

const os = require('os');
const path = require('path');
const { pipeline } = require('stream/promises');
const { Readable, Writable } = require('stream');

const modules = process.env.TASTEDB_NODE_MODULES || path.join(os.homedir(), '.cache/tastedb-node/node_modules');
const { Client } = require(path.join(modules, 'pg'));
const { from: copyFrom, to: copyTo } = require(path.join(modules, 'pg-copy-streams'));

function check(label, got, expected) {
  const [g, e] = [JSON.stringify(got), JSON.stringify(expected)];
  if (g !== e) {
    console.error(`${label}: got ${g}, expected ${e}`);
    process.exit(1);
  }
}

async function main() {
  const client = new Client();
  await client.connect();
  await client.query('DROP TABLE IF EXISTS node_items');
  await client.query('CREATE TABLE node_items (id BIGINT PRIMARY KEY, title TEXT, price DOUBLE PRECISION, added TIMESTAMP)');

  const inserted = await client.query('INSERT INTO node_items VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)',
    [1, 'one', 2, '2026-01-03 12:00:00', 2, 'two', 0.5, null]);
  check('insert count', inserted.rowCount, 2);

  const rows = await client.query('SELECT id, title, price, added FROM node_items ORDER BY id');
  check('int8 as text, float8 as number', rows.rows.map((r) => [r.id, r.title, r.price]), [['1', 'one', 2], ['2', 'two', 0.5]]);
  check('timestamp', rows.rows[0].added instanceof Date && rows.rows[0].added.getHours(), 12);
  check('null timestamp', rows.rows[1].added, null);

  const special = await client.query("SELECT CAST('Infinity' AS DOUBLE PRECISION) AS inf, CAST('-Infinity' AS DOUBLE PRECISION) AS ninf, 1.5::float8 * 2 AS x");
  check('Infinity', [special.rows[0].inf, special.rows[0].ninf, special.rows[0].x], [Infinity, -Infinity, 3]);
  check('column names', special.fields.map((f) => f.name), ['inf', 'ninf', 'x']);

  const arrays = await client.query('SELECT ARRAY[CAST(1 AS BIGINT), 2, 3] AS ints, ARRAY[\'a\', \'b\'] AS texts');
  check('arrays', [arrays.rows[0].ints, arrays.rows[0].texts], [['1', '2', '3'], ['a', 'b']]);

  for (let round = 0; round < 3; round++) {
    const named = await client.query({ name: 'by_id', text: 'SELECT title FROM node_items WHERE id = $1', values: [2] });
    check('named prepared statement', named.rows, [{ title: 'two' }]);
  }

  await pipeline(
    Readable.from(['3\tthree\t1.25\t2026-01-04 00:00:00\n', '4\t\\N\t\\N\t\\N\n']),
    client.query(copyFrom('COPY node_items FROM STDIN')),
  );
  const count = await client.query('SELECT count(*) AS n FROM node_items');
  check('rows after COPY FROM STDIN', count.rows[0].n, '4');

  const chunks = [];
  await pipeline(
    client.query(copyTo('COPY (SELECT id, title FROM node_items WHERE id >= 3 ORDER BY id) TO STDOUT')),
    new Writable({ write(chunk, _enc, done) { chunks.push(chunk); done(); } }),
  );
  check('COPY TO STDOUT', Buffer.concat(chunks).toString(), '3\tthree\n4\t\\N\n');

  try {
    await client.query('INSERT INTO node_items VALUES (1, $1, NULL, NULL)', ['again']);
    check('duplicate key accepted', true, false);
  } catch (e) {
    check('duplicate key SQLSTATE', e.code, '23505');
  }
  try {
    await client.query('SELECT * FROM no_such_table');
    check('missing table accepted', true, false);
  } catch (e) {
    check('missing table SQLSTATE', e.code, '42P01');
  }
  const after = await client.query('SELECT count(*) AS n FROM node_items');
  check('the connection serves on after errors', after.rows[0].n, '4');
  await client.query('DROP TABLE node_items');
  await client.end();
  console.log('node-postgres: all checks passed');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
