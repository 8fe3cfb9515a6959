-- The main job's workload: a small shop's database built, indexed, joined,
-- churned and summarised in memory. Deterministic (no random()), so its
-- output is the same under any allocator.
.headers on
.mode column
CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT, city TEXT);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER, amount INTEGER, note TEXT);
INSERT INTO customer
  SELECT value, 'customer-' || value, 'city-' || (value * 7919 % 97)
  FROM generate_series(1, 50000);
INSERT INTO orders
  SELECT value, 1 + (value * 2654435761) % 50000, (value * 40503) % 1000,
         printf('%.*c', 20 + value % 200, 'x')
  FROM generate_series(1, 300000);
CREATE INDEX orders_by_customer ON orders(customer);
CREATE INDEX customer_by_city ON customer(city);
-- churn: rewrite and delete a third of the orders
UPDATE orders SET note = note || note WHERE id % 3 = 0;
DELETE FROM orders WHERE id % 3 = 1;
VACUUM;
SELECT c.city, count(*) AS orders, sum(o.amount) AS revenue
  FROM orders o JOIN customer c ON c.id = o.customer
  GROUP BY c.city ORDER BY revenue DESC LIMIT 5;
SELECT count(*) AS orders_left, sum(length(note)) AS note_bytes FROM orders;
