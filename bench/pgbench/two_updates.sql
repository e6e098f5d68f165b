-- The limit: the two single-row writes of a cycle, on a row known in advance (each client its own,
-- so nobody waits), with no search, no triggers and nothing else. Two transactions.
\set proxy_id :client_id + 1
UPDATE proxies SET is_in_use = true, worker_id = 'bench_' || :client_id WHERE id = :proxy_id;
UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = :proxy_id;
