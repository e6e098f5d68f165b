-- A worker's task heartbeat, as the fleet sends it. Client n owns task n + 1 (in processing) and
-- proxy n + 1. At head only the first heartbeat of a task in each renewal slot (a tenth of the
-- 5-minute lease_duration) runs the renewal trigger (place_heartbeat_triggers); a client here beats
-- thousands of times a second, so nearly every heartbeat is its own UPDATE and nothing more. A
-- fleet's cadence is heartbeat_every_3s.sql.
\set task_id :client_id + 1
UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() WHERE id = :task_id;
