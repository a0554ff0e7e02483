-- A small session: run it with `cargo run -- sql sql/demo.sql` (uses ./tastedb-data).
CREATE TABLE IF NOT EXISTS demo_events (user_id TEXT NOT NULL, item_id TEXT NOT NULL, event_type TEXT, weight DOUBLE, ts TIMESTAMP);
CREATE TABLE IF NOT EXISTS demo_items (item_id TEXT PRIMARY KEY, title TEXT NOT NULL);

INSERT INTO demo_items
SELECT * FROM (VALUES ('i1', 'The Matrix'), ('i2', 'Amélie'), ('i3', 'Alien')) AS v(item_id, title)
WHERE item_id NOT IN (SELECT item_id FROM demo_items);

INSERT INTO demo_events VALUES
  ('u1', 'i1', 'view', 1, '2024-05-01 10:00:00'),
  ('u1', 'i2', 'purchase', 5, '2024-05-01 10:03:00'),
  ('u2', 'i1', 'view', 1, '2024-05-02 18:30:00'),
  ('u2', 'i3', 'cart', 3, '2024-05-02 18:31:00');

SELECT i.title, count(*) AS events, sum(e.weight) AS weight
FROM demo_events e JOIN demo_items i USING (item_id)
GROUP BY i.title
ORDER BY weight DESC, i.title;
