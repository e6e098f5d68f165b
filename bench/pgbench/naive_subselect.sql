-- The naive take in one statement, without a row lock on the pick: concurrent clients pick the same
-- row, one waits for the other, then takes it anyway (the re-check sees only id = the picked id).
UPDATE proxies SET is_in_use = true, worker_id = 'bench_' || :client_id
 WHERE id = (SELECT id FROM proxies WHERE is_in_use = false AND is_blocked = false LIMIT 1)
RETURNING id AS proxy_id \gset
UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = :proxy_id;
