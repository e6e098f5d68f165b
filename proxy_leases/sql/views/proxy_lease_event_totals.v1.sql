-- Every event the audit trail has recorded, by event and reason: those still in proxy_lease_events
-- and those prune_lease_events has deleted. It only grows (unless someone deletes events by hand),
-- so a monitoring system can take its rate: releases by reason a minute, grants a second.
--
-- Cost: one count over the trail, about 0.2 s per million events (docs/measurements.md). Scrape it
-- every 30 s or more, not per task.

CREATE OR REPLACE VIEW public.proxy_lease_event_totals AS
SELECT x.event, x.reason, sum(x.events)::bigint AS events
  FROM (SELECT e.event, e.reason, count(*) AS events
          FROM public.proxy_lease_events e
         GROUP BY e.event, e.reason
        UNION ALL
        SELECT p.event, p.reason, p.events
          FROM public.proxy_lease_events_pruned p) x
 GROUP BY x.event, x.reason;

COMMENT ON VIEW public.proxy_lease_event_totals IS
    'Events recorded since the audit trail began, by event and reason, pruned ones included: counters '
    '(proxy_leases_events_total: docs/monitoring.md, "Prometheus").';
COMMENT ON COLUMN public.proxy_lease_event_totals.event IS 'granted, released, blocked or unblocked.';
COMMENT ON COLUMN public.proxy_lease_event_totals.reason IS 'Why (docs/watching.md, "Event reasons").';
COMMENT ON COLUMN public.proxy_lease_event_totals.events IS 'How many, in all.';
