-- heartbeat.sql with a renewal due on every heartbeat. The first statement moves the lease end of the
-- client's proxy back to one minute ahead (live, but less than 90 % of lease_duration left), so the
-- heartbeat that follows renews it (tg_tasks__renew_proxy_lease_on_heartbeat). Two transactions;
-- run with pgbench -r to read the heartbeat's own latency. Client n owns task n + 1 and proxy n + 1.
\set task_id :client_id + 1
UPDATE proxies SET leased_until = clock_timestamp() + interval '1 minute' WHERE id = :task_id;
UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() WHERE id = :task_id;
