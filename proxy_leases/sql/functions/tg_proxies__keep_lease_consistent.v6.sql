-- Every write to a proxy's holder or block goes through here, whoever makes it, so the rules hold
-- for the lease API and for the fleet's own UPDATEs alike:
--   * a new holder gets a lease and a new fencing token; the legacy
--       UPDATE proxies SET is_in_use = true, worker_id = $1 WHERE id = $2
--     gets both without asking; while the same grant goes on, its token cannot be rewritten;
--   * a proxy held under a live lease cannot pass to another worker without a release in between:
--     two workers would scrape through it, and the first would not know;
--   * any release, however it is spelled, clears the lease and the token and stamps released_at;
--     a release that counts no strike, of a proxy not blocked, is a clean one and clears the strikes;
--   * v5: a release keeps the ended grant's token in released_lease_token until the next grant or
--     an unblock, so that block_proxy can tell "free since your grant" from "granted to someone
--     since"; blocked_lease_token, the token block_proxy named, is a block detail like the others;
--   * strikes reaching quarantine_after_strikes block the proxy until unblock_proxy;
--   * block details exist only while blocked;
--   * renewed_at is the holder's last sign of life: the grant, then every write that sets a new
--     lease end still ahead (renew_proxy_lease, a task heartbeat, acquire_proxy asked again).
--   * v6 (0022_self_healing): a lease ends within longest_lease. A lease end further ahead, or
--     'infinity', hid the proxy from every reclaim for ever, whoever wrote it; it is refused here,
--     checked only when a write sets a new lease end (the default one is within the bound).
-- A BEFORE trigger runs once the row is locked, on its latest version: what it decides from OLD
-- and the clock is decided after any wait (docs/concurrency.md).
-- SECURITY DEFINER: the fleet's roles write proxies but need no rights on the settings or the sequence.
-- search_path pg_catalog, pg_temp, as since 0014_least_privilege (README, "Roles and rights").

CREATE OR REPLACE FUNCTION public.tg_proxies__keep_lease_consistent()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now         timestamptz := clock_timestamp();
    v_was_held    boolean := TG_OP = 'UPDATE' AND OLD.is_in_use IS TRUE AND OLD.worker_id IS NOT NULL;
    v_was_blocked boolean := TG_OP = 'UPDATE' AND OLD.is_blocked IS TRUE;
    v_quarantine  integer;
    v_longest     interval;
BEGIN
    IF NEW.is_in_use IS TRUE AND NEW.worker_id IS NOT NULL THEN
        IF NOT v_was_held OR NEW.worker_id IS DISTINCT FROM OLD.worker_id THEN
            IF v_was_held AND OLD.leased_until > v_now THEN
                RAISE EXCEPTION 'proxy % is held by % under a live lease; % cannot take it', NEW.id, OLD.worker_id,
                                NEW.worker_id
                    USING ERRCODE = 'object_in_use',
                          DETAIL = format('The lease runs until %s.', OLD.leased_until),
                          HINT = 'Take only free proxies: call acquire_proxy($1), or add AND NOT is_in_use to the '
                                 'UPDATE that takes one. Release a proxy before giving it to another worker.';
            END IF;
            -- Taken over from a holder whose lease ran out: a reclaim from a dead worker, as in a sweep.
            IF v_was_held AND NEW.strike_count IS NOT DISTINCT FROM OLD.strike_count THEN
                NEW.strike_count := OLD.strike_count + 1;
            END IF;
            NEW.lease_token := nextval('public.proxy_lease_token_seq');
            NEW.leased_at := v_now;
            NEW.released_lease_token := NULL;
            NEW.renewed_at := v_now;
            -- A lease end carried over from the previous holder is not one the caller chose.
            IF TG_OP = 'UPDATE' AND NEW.leased_until IS NOT DISTINCT FROM OLD.leased_until THEN
                NEW.leased_until := NULL;
            END IF;
        ELSE
            -- Held since before tokens existed: the backfill (or this write) gives it one.
            NEW.lease_token := coalesce(OLD.lease_token, NEW.lease_token, nextval('public.proxy_lease_token_seq'));
            -- A new lease end still ahead is a renewal, shorter or longer (a worker that acquired for
            -- an hour renews for the default five minutes); one in the past is an expiry, not a sign
            -- of life; none (NULL) gets the default lease below.
            NEW.renewed_at := CASE WHEN NEW.leased_until IS NULL
                                        OR (NEW.leased_until IS DISTINCT FROM OLD.leased_until
                                            AND NEW.leased_until > v_now) THEN v_now
                                   ELSE coalesce(OLD.renewed_at, OLD.leased_at) END;
        END IF;
        IF NEW.leased_until IS NULL THEN
            NEW.leased_until := v_now + (SELECT s.lease_duration FROM public.proxy_lease_settings s);
        -- longest_lease is at least an hour: a finite lease ending within the hour needs no read of the
        -- settings. '-infinity' is refused too: the views' arithmetic on it fails before PostgreSQL 17.
        ELSIF (TG_OP = 'INSERT' OR NEW.leased_until IS DISTINCT FROM OLD.leased_until)
              AND (NOT isfinite(NEW.leased_until) OR NEW.leased_until > v_now + interval '1 hour') THEN
            v_longest := (SELECT s.longest_lease FROM public.proxy_lease_settings s);
            IF NOT isfinite(NEW.leased_until) OR NEW.leased_until > v_now + v_longest THEN
                RAISE EXCEPTION 'proxy % cannot be leased until %: %', NEW.id, NEW.leased_until,
                                CASE WHEN NEW.leased_until = '-infinity' THEN 'a lease ends at a time'
                                     ELSE format('further ahead than longest_lease (%s)', v_longest) END
                    USING ERRCODE = 'check_violation', COLUMN = 'leased_until',
                          DETAIL = format('A lease of proxy %s may end at %s at the latest.', NEW.id, v_now + v_longest),
                          HINT = 'Renew the lease while the work goes on (renew_proxy_lease, or the heartbeat of the '
                                 'task), or raise the bound: UPDATE proxy_lease_settings SET longest_lease = ...';
            END IF;
        END IF;
        NEW.leased_at := coalesce(NEW.leased_at, v_now);
    ELSE
        IF NOT v_was_held AND (NEW.is_in_use IS TRUE OR NEW.worker_id IS NOT NULL) THEN
            RAISE EXCEPTION 'proxy % cannot be taken with only one of is_in_use and worker_id', NEW.id
                USING ERRCODE = 'check_violation',
                      HINT = 'Call acquire_proxy($1), or set both in one statement: '
                             'UPDATE proxies SET is_in_use = true, worker_id = $1 WHERE id = $2.';
        END IF;
        -- Anything else is free: on a held proxy, is_in_use = false or worker_id = NULL releases it.
        NEW.is_in_use := false;
        NEW.worker_id := NULL;
        NEW.leased_at := NULL;
        NEW.leased_until := NULL;
        NEW.lease_token := NULL;
        NEW.renewed_at := NULL;
        NEW.released_lease_token := CASE WHEN TG_OP = 'UPDATE' THEN OLD.released_lease_token END;
        IF v_was_held THEN
            NEW.released_at := v_now;
            NEW.released_lease_token := OLD.lease_token;
            IF NEW.strike_count IS NOT DISTINCT FROM OLD.strike_count AND NEW.is_blocked IS NOT TRUE THEN
                NEW.strike_count := 0;
            END IF;
        END IF;
    END IF;

    IF TG_OP = 'UPDATE' AND NEW.strike_count > OLD.strike_count THEN
        v_quarantine := (SELECT s.quarantine_after_strikes FROM public.proxy_lease_settings s);
        IF NEW.strike_count >= v_quarantine AND NOT (v_was_blocked AND OLD.blocked_until IS NULL) THEN
            NEW.blocked_reason := format('quarantined after %s strikes in a row; last: %s', NEW.strike_count,
                                         CASE WHEN NEW.is_blocked IS TRUE AND NOT v_was_blocked
                                              THEN coalesce(NEW.blocked_reason, 'blocked')
                                              ELSE 'reclaimed from a dead worker' END);
            NEW.is_blocked := true;
            NEW.blocked_until := NULL;
        END IF;
    END IF;

    IF NEW.is_blocked IS TRUE THEN
        NEW.blocked_at := CASE WHEN v_was_blocked THEN coalesce(NEW.blocked_at, v_now) ELSE v_now END;
    ELSE
        NEW.blocked_at := NULL;
        NEW.blocked_until := NULL;
        NEW.blocked_reason := NULL;
        NEW.blocked_lease_token := NULL;
        -- An unblock is a later word on the proxy than any ban of the grant that ended before it.
        IF v_was_blocked THEN
            NEW.released_lease_token := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__keep_lease_consistent() IS
    'Trigger on proxies: a new holder gets a new lease_token, leased_at = now and leased_until = now + '
    'lease_duration (unless the statement set leased_until) and renewed_at = now, which every later '
    'write setting a new leased_until still ahead stamps again; on a held proxy, is_in_use = false or '
    'worker_id = NULL frees it completely, stamps released_at and keeps the ended token in '
    'released_lease_token (until the next grant or unblock), and a release of an unblocked proxy that adds '
    'no strike clears strike_count; strikes reaching quarantine_after_strikes block the proxy until '
    'unblock_proxy; block details (blocked_at, blocked_until, blocked_reason, blocked_lease_token) exist only while blocked; '
    'taking a free proxy with only one of is_in_use and worker_id is refused (23514), and so is giving a '
    'proxy held under a live lease to another worker (55006), and a lease end further ahead than now + '
    'longest_lease, or infinite either way (23514).';
