-- How many events the audit trail has recorded since it began, by event and reason, pruned ones
-- included: the counters a monitoring system takes rates of (releases by reason a minute, say).
-- Counting the trail alone would drop at every prune, which Prometheus reads as a counter reset.
-- prune_lease_events (v3) adds what it deletes here.

CREATE TABLE public.proxy_lease_events_pruned (
    event  text NOT NULL,
    reason text NOT NULL,
    events bigint NOT NULL CONSTRAINT proxy_lease_events_pruned_events_positive CHECK (events > 0),
    PRIMARY KEY (event, reason)
);

COMMENT ON TABLE public.proxy_lease_events_pruned IS
    'proxy-leases: how many events prune_lease_events() has deleted from proxy_lease_events, by event and '
    'reason (see proxy_lease_event_totals).';
COMMENT ON COLUMN public.proxy_lease_events_pruned.event IS 'granted, released, blocked or unblocked.';
COMMENT ON COLUMN public.proxy_lease_events_pruned.reason IS 'The events'' reason (docs/watching.md, "Event reasons").';
COMMENT ON COLUMN public.proxy_lease_events_pruned.events IS 'How many such events were pruned, in all.';
