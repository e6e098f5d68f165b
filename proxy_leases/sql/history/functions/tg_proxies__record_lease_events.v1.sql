-- The audit trail is written here, after the row has changed, whoever changed it: the lease API,
-- the triggers, the sweeper, the fleet's own UPDATEs, an operator in psql. No path can forget to
-- log, and an event exists exactly when its change does (same transaction, same rollback).
--
-- The code paths of proxy-leases say why they write in proxy_leases.event_reason: set just before
-- their statement and put back as it was just after (an error rolls it back with the statement),
-- so that a later write in the same transaction is not mislabelled, and a statement whose own
-- triggers write (a task trigger inside it) keeps its label. A function's SET clause would scope
-- it more neatly, but PostgreSQL lets only superusers name a custom setting there. A write that sets
-- none is a direct UPDATE: reason direct_update, or taken_over for a proxy taken from a holder
-- whose lease ran out. Renewals change neither the grant nor the block and are not logged; the
-- released event keeps the grant's last renewal instead (renewed_at), the last sign of life of its
-- worker, from which proxy_recoveries measures how long a dead worker kept the proxy.
-- SECURITY DEFINER: the fleet's roles may not write the audit trail themselves.

CREATE OR REPLACE FUNCTION public.tg_proxies__record_lease_events()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_claimed     text := nullif(current_setting('proxy_leases.event_reason', true), '');
    v_was_held    boolean := TG_OP <> 'INSERT' AND OLD.lease_token IS NOT NULL;
    v_is_held     boolean := TG_OP <> 'DELETE' AND NEW.lease_token IS NOT NULL;
    v_was_blocked boolean := TG_OP <> 'INSERT' AND OLD.is_blocked IS TRUE;
    v_is_blocked  boolean := TG_OP <> 'DELETE' AND NEW.is_blocked IS TRUE;
    v_new_grant   boolean := v_is_held AND (NOT v_was_held OR NEW.lease_token <> OLD.lease_token);
    -- A block begins, or an existing one is replaced: blocked again for another reason or another
    -- end (block_proxy over an operator's block, quarantine of a proxy in a cooldown).
    v_new_block   boolean := v_is_blocked AND (NOT v_was_blocked
                                              OR NEW.blocked_reason IS DISTINCT FROM OLD.blocked_reason
                                              OR NEW.blocked_until IS DISTINCT FROM OLD.blocked_until);
    v_now         timestamptz := clock_timestamp();
    -- When the change happened, as the proxies trigger stamped it before the write (a grant's
    -- leased_at, a release's released_at, a block's blocked_at: one clock reading per row), so that
    -- the events of one change share it.
    v_at          timestamptz := CASE WHEN TG_OP = 'DELETE' THEN v_now
                                      WHEN v_new_grant THEN coalesce(NEW.leased_at, v_now)
                                      WHEN v_was_held AND NOT v_is_held THEN coalesce(NEW.released_at, v_now)
                                      WHEN v_is_blocked AND NOT v_was_blocked THEN coalesce(NEW.blocked_at, v_now)
                                      ELSE v_now END;
    -- Who, as the session sees itself: SET ROLE counts (current_user here is this function's owner).
    v_user        text := coalesce(nullif(current_setting('role'), 'none'), session_user);
BEGIN
    -- In the order a reader expects: the old grant ends and the block lifts before a new grant
    -- begins; a block comes last. A takeover is released, then granted: never two holders at once.
    IF v_was_held AND (NOT v_is_held OR v_new_grant) THEN
        INSERT INTO public.proxy_lease_events
            (occurred_at, proxy_id, event, reason, worker_id, lease_token, leased_at, renewed_at, leased_until,
             detail, db_user)
        VALUES (v_at, OLD.id, 'released',
                CASE WHEN TG_OP = 'DELETE' THEN 'proxy_deleted'
                     WHEN v_is_held THEN 'taken_over'
                     ELSE coalesce(v_claimed, 'direct_update') END,
                OLD.worker_id, OLD.lease_token, OLD.leased_at, coalesce(OLD.renewed_at, OLD.leased_at),
                OLD.leased_until,
                CASE WHEN v_new_block THEN NEW.blocked_reason END, v_user);
    END IF;

    IF v_was_blocked AND NOT v_is_blocked AND TG_OP = 'UPDATE' THEN
        INSERT INTO public.proxy_lease_events (occurred_at, proxy_id, event, reason, detail, db_user)
        VALUES (v_at, NEW.id, 'unblocked', coalesce(v_claimed, 'direct_update'), OLD.blocked_reason, v_user);
    END IF;

    IF v_new_grant THEN
        INSERT INTO public.proxy_lease_events
            (occurred_at, proxy_id, event, reason, worker_id, lease_token, leased_at, renewed_at, leased_until, db_user)
        VALUES (v_at, NEW.id, 'granted', coalesce(v_claimed, 'direct_update'),
                NEW.worker_id, NEW.lease_token, NEW.leased_at, NEW.renewed_at, NEW.leased_until, v_user);
    END IF;

    IF v_new_block THEN
        INSERT INTO public.proxy_lease_events (occurred_at, proxy_id, event, reason, detail, db_user)
        VALUES (v_at, NEW.id, 'blocked',
                -- The proxies trigger quarantines a proxy whose strikes reach the threshold, whatever the
                -- statement meant: an open-ended block, with its own wording in blocked_reason. A
                -- statement that merely wrote such words, below the threshold, is not a quarantine.
                CASE WHEN TG_OP = 'UPDATE' AND NEW.strike_count > OLD.strike_count AND NEW.blocked_until IS NULL
                          AND starts_with(NEW.blocked_reason,
                                          format('quarantined after %s strikes in a row; ', NEW.strike_count))
                          AND NEW.strike_count >= (SELECT s.quarantine_after_strikes FROM public.proxy_lease_settings s)
                     THEN 'quarantined'
                     ELSE coalesce(v_claimed, 'direct_update') END,
                NEW.blocked_reason, v_user);
    END IF;

    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__record_lease_events() IS
    'Trigger on proxies: appends to proxy_lease_events a released event when a grant ends, a granted '
    'event when a new one begins (a takeover: released, then granted, at the same time), a blocked event '
    'when a block begins or is replaced (another reason or end) and an unblocked event when it ends, with the '
    'reason the writing code path set in proxy_leases.event_reason (direct_update when none did). '
    'Renewals are not logged.';
