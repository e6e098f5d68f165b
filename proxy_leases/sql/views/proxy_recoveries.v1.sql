-- Every proxy reclaimed from a dead worker, and how long it stayed held after that worker's last
-- sign of life: the grant or its last renewal, on the database clock. Task heartbeats renew the
-- lease only once a tenth of it has passed, so for a worker that only sends heartbeats the true
-- last sign of life may be up to a tenth of the lease later: the figure is an upper bound.
-- A reclaim is a release that counts a strike: by the sweeper (lease_expired, orphaned,
-- inconsistent), at a container's start (container_restart), by a task taken from its worker
-- (requeued, reassigned) or by a direct UPDATE giving an expired lease to another worker (taken_over).

CREATE OR REPLACE VIEW public.proxy_recoveries AS
SELECT e.occurred_at                                        AS freed_at,
       e.proxy_id,
       e.worker_id,
       e.reason,
       e.lease_token,
       e.renewed_at                                         AS last_sign_of_life,
       e.leased_until,
       e.occurred_at - e.renewed_at                         AS held_after_last_sign_of_life,
       e.occurred_at - e.leased_until                       AS freed_after_lease_end
  FROM public.proxy_lease_events e
 WHERE e.event = 'released'
   AND e.reason IN ('lease_expired', 'orphaned', 'inconsistent', 'container_restart', 'requeued',
                    'reassigned', 'taken_over');

COMMENT ON VIEW public.proxy_recoveries IS
    'Proxies reclaimed from dead workers (released events with reason lease_expired, orphaned, '
    'inconsistent, container_restart, requeued, reassigned or taken_over): held_after_last_sign_of_life '
    '= freed_at - the grant''s last renewal (an upper bound: heartbeats renew only once a tenth of the '
    'lease has passed); freed_after_lease_end, negative when freed before the lease ran out.';

CREATE OR REPLACE VIEW public.proxy_recovery_by_hour AS
SELECT date_trunc('hour', r.freed_at)                                                    AS hour,
       count(*)                                                                          AS reclaimed,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.held_after_last_sign_of_life))::numeric, 1)
                                                                                         AS p50_seconds,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM r.held_after_last_sign_of_life))::numeric, 1)
                                                                                         AS p95_seconds,
       round(max(extract(epoch FROM r.held_after_last_sign_of_life)), 1)                 AS max_seconds,
       round(sum(extract(epoch FROM r.held_after_last_sign_of_life)))                    AS lost_proxy_seconds,
       count(*) FILTER (WHERE r.freed_after_lease_end > interval '0')                    AS freed_after_lease_end
  FROM public.proxy_recoveries r
 GROUP BY date_trunc('hour', r.freed_at);

COMMENT ON VIEW public.proxy_recovery_by_hour IS
    'Per hour: proxies reclaimed from dead workers, and how long each stayed held after its worker''s last '
    'sign of life: p50, p95 and max in seconds, and their sum, lost_proxy_seconds (time the pool went '
    'without them). freed_after_lease_end counts those freed only after their lease ran out (the sweep '
    'lag); compare max_seconds with lease_duration + the job''s period.';
