-- A task's life as the fleet's worker lives it: claim the task, take the proxy with the fleet's own
-- UPDATE, finish the task, give the proxy back. Four transactions; client n owns task n + 1 and
-- proxy n + 1. With the project's triggers, finishing the task already frees the proxy, and the
-- worker's own release then changes nothing.
\set task_id :client_id + 1
UPDATE catalog_tasks SET status = 'processing', worker_id = 'bench_' || :client_id, heartbeat_at = clock_timestamp()
 WHERE id = :task_id;
UPDATE proxies SET is_in_use = true, worker_id = 'bench_' || :client_id WHERE id = :task_id;
UPDATE catalog_tasks SET status = 'done' WHERE id = :task_id;
UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = :task_id;
