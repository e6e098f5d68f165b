-- One cycle of the lease API: acquire_proxy, then release_proxy with the token it returned.
-- Two transactions (pgbench runs each statement in its own). Worker id: bench_<client>.
SELECT proxy_id, lease_token FROM acquire_proxy('bench_' || :client_id) \gset
SELECT release_proxy(:proxy_id, :lease_token);
