-- Every write to a proxy's holder goes through here, whoever makes it: the legacy
--   UPDATE proxies SET is_in_use = true, worker_id = $1 WHERE id = $2
-- gets a lease it never asked for, and any release, however it is spelled, clears the lease.
-- SECURITY DEFINER: the fleet's roles write proxies but need no rights on proxy_lease_settings.

CREATE OR REPLACE FUNCTION public.tg_proxies__keep_lease_consistent()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_now       timestamptz := clock_timestamp();
    v_was_held  boolean := TG_OP = 'UPDATE' AND OLD.is_in_use IS TRUE AND OLD.worker_id IS NOT NULL;
    v_new_grant boolean;
BEGIN
    IF NEW.is_in_use IS TRUE AND NEW.worker_id IS NOT NULL THEN
        v_new_grant := NOT v_was_held OR NEW.worker_id IS DISTINCT FROM OLD.worker_id;
        IF v_new_grant THEN
            NEW.leased_at := v_now;
            -- A lease end carried over from the previous holder is not one the caller chose.
            IF TG_OP = 'UPDATE' AND NEW.leased_until IS NOT DISTINCT FROM OLD.leased_until THEN
                NEW.leased_until := NULL;
            END IF;
        END IF;
        IF NEW.leased_until IS NULL THEN
            NEW.leased_until := v_now + (SELECT s.lease_duration FROM public.proxy_lease_settings s);
        END IF;
        NEW.leased_at := coalesce(NEW.leased_at, v_now);
        RETURN NEW;
    END IF;

    IF NOT v_was_held AND (NEW.is_in_use IS TRUE OR NEW.worker_id IS NOT NULL) THEN
        RAISE EXCEPTION 'proxy % cannot be taken with only one of is_in_use and worker_id', NEW.id
            USING ERRCODE = 'check_violation',
                  HINT = 'Set both in one statement: '
                         'UPDATE proxies SET is_in_use = true, worker_id = $1 WHERE id = $2.';
    END IF;

    -- Anything else is free: on a held proxy, is_in_use = false or worker_id = NULL releases it.
    NEW.is_in_use := false;
    NEW.worker_id := NULL;
    NEW.leased_at := NULL;
    NEW.leased_until := NULL;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__keep_lease_consistent() IS
    'Trigger on proxies: a new holder gets leased_at = now and leased_until = now + lease_duration '
    '(unless the statement set leased_until itself); on a held proxy, is_in_use = false or '
    'worker_id = NULL frees it completely; taking a free proxy with only one of is_in_use and '
    'worker_id is refused (23514).';
