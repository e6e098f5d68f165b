-- The settings' CHECK constraints already refuse a bad value, but a constraint can say only its own
-- name. This trigger runs first and says which setting, what is wrong with it and what to do
-- instead; the constraints stay as the last word. A setting longer than 100 years is refused too:
-- every interval here is added to a timestamp somewhere, and a typo of that size would make every
-- acquire_proxy (lease_duration), every requeue (heartbeat_timeout) or every pruning
-- (event_retention) fail with "timestamp out of range" long after the UPDATE that caused it.
--
-- v2 (0017_finite_intervals) refuses an infinite setting by name (23514, with a hint); v1 let
-- PostgreSQL 17's 'infinity' interval through to its arithmetic, which failed with 22008 and no hint.
-- v3 (0021_maintenance_health) checks the health settings too: maintenance_period as the other
-- durations, free_pool_floor not negative, quarantined_share_limit a share (above 0, at most 1).

CREATE OR REPLACE FUNCTION public.tg_proxy_lease_settings__reject_bad_values()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c_longest constant interval := interval '100 years';
    v_column text;
    v_value  interval;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.singleton IS NOT TRUE THEN
        RAISE EXCEPTION 'proxy_lease_settings must keep its one row'
            USING ERRCODE = CASE WHEN TG_OP = 'INSERT' THEN 'unique_violation'
                                 WHEN NEW.singleton IS NULL THEN 'not_null_violation' ELSE 'check_violation' END,
                  HINT = 'Change a setting with UPDATE proxy_lease_settings SET ...';
    END IF;

    FOREACH v_column IN ARRAY ARRAY['lease_duration', 'orphan_grace', 'heartbeat_timeout', 'record_lease_events',
                                       'maintenance_period'] LOOP
        IF to_jsonb(NEW) -> v_column = 'null'::jsonb THEN
            RAISE EXCEPTION '% must not be NULL', v_column
                USING ERRCODE = 'not_null_violation', COLUMN = v_column,
                      HINT = format('UPDATE proxy_lease_settings SET %s = DEFAULT restores the default.', v_column);
        END IF;
    END LOOP;

    -- PostgreSQL 17 and later read 'infinity' and '-infinity' as intervals (earlier versions refuse
    -- them on input, 22007): no setting can be that, and the checks below would fail on them with 22008.
    FOR v_column, v_value IN VALUES ('lease_duration', NEW.lease_duration), ('orphan_grace', NEW.orphan_grace),
                                    ('heartbeat_timeout', NEW.heartbeat_timeout), ('event_retention', NEW.event_retention),
                                    ('maintenance_period', NEW.maintenance_period) LOOP
        IF NOT isfinite(v_value) THEN
            RAISE EXCEPTION '% must be finite, got %', v_column, v_value
                USING ERRCODE = 'check_violation', COLUMN = v_column,
                      HINT = CASE v_column WHEN 'event_retention' THEN 'NULL keeps every event for ever.'
                                           ELSE format('UPDATE proxy_lease_settings SET %s = DEFAULT restores the default.', v_column)
                             END;
        END IF;
    END LOOP;

    FOR v_column, v_value IN VALUES ('lease_duration', NEW.lease_duration), ('heartbeat_timeout', NEW.heartbeat_timeout),
                                    ('event_retention', NEW.event_retention), ('maintenance_period', NEW.maintenance_period) LOOP
        -- A part below zero is not positive either: '1 mon -30 days 1 second' compares as more than
        -- zero (a month counts as 30 days) but, added to a date in February, lands in the past.
        IF v_value <= interval '0'
           OR least(extract(year FROM v_value), extract(month FROM v_value), extract(day FROM v_value),
                    extract(epoch FROM v_value - date_trunc('day', v_value))) < 0 THEN
            RAISE EXCEPTION '% must be positive, got %', v_column, v_value
                USING ERRCODE = 'check_violation', COLUMN = v_column,
                      HINT = CASE v_column WHEN 'event_retention' THEN 'NULL keeps every event; ' ELSE '' END
                             || format('UPDATE proxy_lease_settings SET %s = DEFAULT restores the default.', v_column);
        END IF;
        IF v_value > c_longest THEN
            RAISE EXCEPTION '% is too long, got %', v_column, v_value
                USING ERRCODE = 'check_violation', COLUMN = v_column,
                      DETAIL = format('Settings are limited to %s.', c_longest),
                      HINT = CASE v_column WHEN 'event_retention' THEN 'NULL keeps every event for ever.'
                                           ELSE format('UPDATE proxy_lease_settings SET %s = DEFAULT restores the default.', v_column)
                             END;
        END IF;
    END LOOP;

    IF NEW.orphan_grace < interval '0'
       OR least(extract(year FROM NEW.orphan_grace), extract(month FROM NEW.orphan_grace),
                extract(day FROM NEW.orphan_grace),
                extract(epoch FROM NEW.orphan_grace - date_trunc('day', NEW.orphan_grace))) < 0 THEN
        RAISE EXCEPTION 'orphan_grace must not be negative, got %', NEW.orphan_grace
            USING ERRCODE = 'check_violation', COLUMN = 'orphan_grace',
                  HINT = '0 treats a held proxy without a task in processing as orphaned at once.';
    END IF;
    IF NEW.orphan_grace >= NEW.lease_duration THEN
        RAISE EXCEPTION 'orphan_grace must be shorter than lease_duration, got % and %',
                        NEW.orphan_grace, NEW.lease_duration
            USING ERRCODE = 'check_violation', COLUMN = 'orphan_grace',
                  HINT = 'Change both in one UPDATE: SET lease_duration = ..., orphan_grace = ...';
    END IF;
    IF NEW.quarantine_after_strikes <= 0 THEN
        RAISE EXCEPTION 'quarantine_after_strikes must be positive, got %', NEW.quarantine_after_strikes
            USING ERRCODE = 'check_violation', COLUMN = 'quarantine_after_strikes',
                  HINT = 'NULL never quarantines.';
    END IF;
    IF NEW.free_pool_floor < 0 THEN
        RAISE EXCEPTION 'free_pool_floor must not be negative, got %', NEW.free_pool_floor
            USING ERRCODE = 'check_violation', COLUMN = 'free_pool_floor',
                  HINT = 'NULL switches the free-pool check of proxy_leases_health off.';
    END IF;
    IF NOT (NEW.quarantined_share_limit > 0 AND NEW.quarantined_share_limit <= 1) THEN
        RAISE EXCEPTION 'quarantined_share_limit must be above 0 and at most 1, got %', NEW.quarantined_share_limit
            USING ERRCODE = 'check_violation', COLUMN = 'quarantined_share_limit',
                  HINT = 'It is a share of the pool: 0.2 is a fifth. NULL switches the check off.';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_settings__reject_bad_values() IS
    'Trigger: refuses a second settings row (23505), a NULL setting (23502), and a setting out of range '
    '(23514: a duration <= 0, infinite or over 100 years, orphan_grace negative or not shorter than lease_duration, '
    'quarantine_after_strikes <= 0, maintenance_period as the durations, free_pool_floor negative, '
    'quarantined_share_limit not above 0 and at most 1), naming the setting, with a hint; changes nothing.';
