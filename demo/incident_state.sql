-- The pool as the incident report found it (2025-12-10), on the legacy schema:
--   100 proxies: 27 blocked, 44 held by the live workers of containers b77514be, 93816237 and
--   e1bf8c63 (each with a task in processing), 16 stuck (15 held by workers of the crashed
--   container 8b4f59aa, 1 by b77514be_16), 13 free.
-- The report lists 13 tasks for e1bf8c63, but its own 44 in use needs 14 holders there: 15 + 15 + 14.
-- The crashed workers' tasks were already put back to pending by the heartbeat manager; their
-- proxies were not. History rows (done, failed, pending) include NULL worker ids, and one task in
-- processing has a NULL worker id: the report's NOT IN query is wrong on both.

INSERT INTO proxies (id, host, port, is_in_use, worker_id, is_blocked)
SELECT n, format('10.8.%s.%s', n / 256, n % 256), 3128,
       CASE WHEN n <= 60 THEN true ELSE false END,
       CASE WHEN n <= 15 THEN 'b77514be_' || n
            WHEN n <= 30 THEN '93816237_' || (n - 15)
            WHEN n <= 44 THEN 'e1bf8c63_' || (n - 30)
            WHEN n <= 59 THEN '8b4f59aa_' || (n - 44)
            WHEN n = 60 THEN 'b77514be_16'
       END,
       n > 73
  FROM generate_series(1, 100) AS n;
SELECT setval(pg_get_serial_sequence('proxies', 'id'), 100);

-- Live workers: a task in processing each, heartbeat seconds ago.
INSERT INTO catalog_tasks (url, status, worker_id, heartbeat_at)
SELECT 'https://shop.example/catalog/' || n, 'processing', 'b77514be_' || n, now() - interval '5 seconds'
  FROM generate_series(1, 15) AS n;
INSERT INTO object_tasks (url, status, worker_id, heartbeat_at)
SELECT 'https://shop.example/object/' || n, 'processing', '93816237_' || n, now() - interval '5 seconds'
  FROM generate_series(1, 15) AS n;
INSERT INTO catalog_tasks (url, status, worker_id, heartbeat_at)
SELECT 'https://shop.example/catalog/e' || n, 'processing', 'e1bf8c63_' || n, now() - interval '5 seconds'
  FROM generate_series(1, 7) AS n;
INSERT INTO object_tasks (url, status, worker_id, heartbeat_at)
SELECT 'https://shop.example/object/e' || n, 'processing', 'e1bf8c63_' || n, now() - interval '5 seconds'
  FROM generate_series(8, 14) AS n;

-- The crashed container's tasks, requeued by the heartbeat manager; b77514be_16's task, finished.
INSERT INTO catalog_tasks (url, status, worker_id, heartbeat_at)
SELECT 'https://shop.example/catalog/lost' || n, 'pending', NULL, NULL
  FROM generate_series(1, 15) AS n;
INSERT INTO object_tasks (url, status, worker_id, heartbeat_at)
VALUES ('https://shop.example/object/b16', 'done', 'b77514be_16', now() - interval '40 minutes');

-- History, and the rows that break NOT IN.
INSERT INTO catalog_tasks (url, status, worker_id, heartbeat_at)
SELECT 'https://shop.example/catalog/old' || n,
       (ARRAY['done', 'failed', 'pending'])[1 + n % 3],
       CASE WHEN n % 2 = 0 THEN NULL ELSE '0ld0c0de_' || n END,
       now() - interval '3 hours'
  FROM generate_series(1, 300) AS n;
INSERT INTO object_tasks (url, status, worker_id, heartbeat_at)
SELECT 'https://shop.example/object/old' || n, 'done', NULL, now() - interval '3 hours'
  FROM generate_series(1, 300) AS n;
INSERT INTO catalog_tasks (url, status, worker_id, heartbeat_at)
VALUES ('https://shop.example/catalog/orphan-row', 'processing', NULL, now() - interval '2 hours');
