-- The fleet's heartbeat at a fleet's cadence: each one 3 s after the client's previous one on the
-- worker's own clock (heartbeat_at moves on by 3 s), as a worker that beats every 3 s sends them,
-- played back as fast as the server takes them. At head one in ten is the first of its renewal
-- slot (a tenth of the 5-minute lease_duration) and runs the renewal trigger, which finds the lease
-- fresh; the other nine run nothing but the UPDATE (place_heartbeat_triggers). Client n owns task n + 1.
\set task_id :client_id + 1
UPDATE catalog_tasks SET heartbeat_at = heartbeat_at + interval '3 seconds' WHERE id = :task_id;
