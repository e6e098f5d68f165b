-- The naive take: lock the first free row (no SKIP LOCKED), mark it, commit; then free it.
-- Every client queues on the same first free row, then re-checks it once its holder commits.
BEGIN;
SELECT id AS proxy_id FROM proxies WHERE is_in_use = false AND is_blocked = false LIMIT 1 FOR UPDATE \gset
UPDATE proxies SET is_in_use = true, worker_id = 'bench_' || :client_id WHERE id = :proxy_id;
COMMIT;
UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = :proxy_id;
