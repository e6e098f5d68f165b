-- A worker's task heartbeat, as the fleet sends it. Client n owns task n + 1 (in processing) and
-- proxy n + 1. With the project's triggers it also renews the proxy's lease, once a tenth of the
-- lease has passed since the last renewal (see tg_tasks__renew_proxy_lease_on_heartbeat).
\set task_id :client_id + 1
UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() WHERE id = :task_id;
