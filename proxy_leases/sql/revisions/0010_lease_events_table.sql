-- The audit trail: one row per grant, release, block and unblock of a proxy, so that "who held
-- proxy 17 at 03:12, and why was it released?" has an answer afterwards. Appended by a trigger on
-- proxies (tg_proxies__record_lease_events), pruned by the scheduled maintenance after
-- event_retention, never updated.
--
-- No foreign key to proxies: the history of a proxy outlives the proxy.

CREATE TABLE public.proxy_lease_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    proxy_id     bigint NOT NULL,
    event        text NOT NULL
                 CONSTRAINT proxy_lease_events_event_known
                 CHECK (event IN ('granted', 'released', 'blocked', 'unblocked')),
    reason       text NOT NULL,
    worker_id    text,
    lease_token  bigint,
    leased_at    timestamptz,
    renewed_at   timestamptz,
    leased_until timestamptz,
    detail       text,
    db_user      text NOT NULL DEFAULT session_user
);

CREATE INDEX proxy_lease_events_proxy_idx ON public.proxy_lease_events (proxy_id, occurred_at);
CREATE INDEX proxy_lease_events_occurred_at_idx ON public.proxy_lease_events (occurred_at);
-- What proxy_recoveries reads: the few releases that reclaimed a proxy from a dead worker, among the
-- many ordinary grants and releases.
CREATE INDEX proxy_lease_events_reclaims_idx ON public.proxy_lease_events (occurred_at)
    WHERE event = 'released'
      AND reason IN ('lease_expired', 'orphaned', 'inconsistent', 'container_restart', 'requeued',
                     'reassigned', 'taken_over');

COMMENT ON INDEX public.proxy_lease_events_proxy_idx IS
    'proxy-leases: one proxy''s history ("who held proxy 17 at 03:12?").';
COMMENT ON INDEX public.proxy_lease_events_occurred_at_idx IS
    'proxy-leases: events by time, oldest first for prune_lease_events.';
COMMENT ON INDEX public.proxy_lease_events_reclaims_idx IS
    'proxy-leases: the reclaims from dead workers, which proxy_recoveries reads.';

COMMENT ON TABLE public.proxy_lease_events IS
    'proxy-leases audit trail, append-only: every grant, release, block and unblock of a proxy, written '
    'in the transaction that made the change. Renewals are not logged. Rows older than '
    'proxy_lease_settings.event_retention are deleted by the scheduled maintenance (prune_lease_events).';
COMMENT ON COLUMN public.proxy_lease_events.id IS 'Increases with every event appended.';
COMMENT ON COLUMN public.proxy_lease_events.proxy_id IS 'The proxy (proxies.id); kept after the proxy is deleted.';
COMMENT ON COLUMN public.proxy_lease_events.occurred_at IS
    'When the change happened, on the database clock (the proxy''s leased_at, released_at or blocked_at).';
COMMENT ON COLUMN public.proxy_lease_events.event IS 'granted, released, blocked or unblocked.';
COMMENT ON COLUMN public.proxy_lease_events.reason IS
    'Why. granted: acquired | direct_update. released: released_by_worker | blocked_by_worker | '
    'task_finished | task_deleted | requeued | reassigned | lease_expired | orphaned | inconsistent | '
    'container_restart | blocked_while_held | taken_over | proxy_deleted | direct_update. blocked: '
    'blocked_by_worker | quarantined | direct_update. unblocked: cooldown_over | unblocked_by_operator | '
    'direct_update. See the README for each.';
COMMENT ON COLUMN public.proxy_lease_events.worker_id IS 'granted, released: the worker the grant was for.';
COMMENT ON COLUMN public.proxy_lease_events.lease_token IS 'granted, released: the grant''s fencing token.';
COMMENT ON COLUMN public.proxy_lease_events.leased_at IS 'granted, released: when the grant began.';
COMMENT ON COLUMN public.proxy_lease_events.renewed_at IS
    'granted, released: the grant''s last renewal (its worker''s last sign of life), or its start.';
COMMENT ON COLUMN public.proxy_lease_events.leased_until IS 'granted, released: when the lease was to end.';
COMMENT ON COLUMN public.proxy_lease_events.detail IS
    'blocked: the block reason (released by a block: the same); unblocked: the reason of the block that ended.';
COMMENT ON COLUMN public.proxy_lease_events.db_user IS
    'The database role that made the change: the one set with SET ROLE, else the session''s user.';

CREATE FUNCTION public.tg_proxy_lease_events__append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RAISE EXCEPTION 'proxy_lease_events is append-only'
        USING ERRCODE = 'restrict_violation',
              HINT = 'Old events are deleted by prune_lease_events(); change proxy_lease_settings.event_retention '
                     'to keep them longer or shorter.';
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_events__append_only() IS
    'Trigger: refuses UPDATE on proxy_lease_events; an audit trail is not rewritten.';

CREATE TRIGGER append_only
    BEFORE UPDATE ON public.proxy_lease_events
    FOR EACH STATEMENT EXECUTE FUNCTION public.tg_proxy_lease_events__append_only();

COMMENT ON TRIGGER append_only ON public.proxy_lease_events IS
    'proxy-leases: events are appended and, past event_retention, deleted; never updated.';

-- The last sign of life of a proxy's holder, stamped by the proxies trigger.
ALTER TABLE public.proxies ADD COLUMN renewed_at timestamptz;

COMMENT ON COLUMN public.proxies.renewed_at IS
    'When the current grant began or was last renewed (by renew_proxy_lease, a task heartbeat or acquire_proxy): '
    'the holder''s last sign of life. NULL when free.';

-- Renewals before this revision left no stamp. A renewal sets leased_until = now + lease_duration,
-- so that minus lease_duration is the best estimate of the last one (never before the grant, never
-- in the future).
UPDATE public.proxies p
   SET renewed_at = greatest(p.leased_at, least(p.leased_until - s.lease_duration, clock_timestamp()))
  FROM public.proxy_lease_settings s
 WHERE p.is_in_use AND p.renewed_at IS NULL;

ALTER TABLE public.proxy_lease_settings
    ADD COLUMN event_retention interval DEFAULT '30 days'
        CONSTRAINT proxy_lease_settings_event_retention_positive CHECK (event_retention > interval '0');

COMMENT ON COLUMN public.proxy_lease_settings.event_retention IS
    'How long proxy_lease_events keeps an event; the scheduled maintenance deletes older ones. NULL: keep '
    'them all.';
