-- Intervals the API and the settings refuse although they compare as positive: '1 mon -30 days
-- 1 second' is more than zero (a month counts as 30 days), but added to a date in February it lands
-- in the past. A lease, a cooldown or a timeout must be positive in each of its parts.

CREATE OR REPLACE FUNCTION public.interval_has_negative_part(value interval)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(extract(year FROM value), extract(month FROM value), extract(day FROM value),
                 extract(epoch FROM value - date_trunc('day', value))) < 0
$$;

COMMENT ON FUNCTION public.interval_has_negative_part(interval) IS
    'Whether any part of the interval (years, months, days, time) is below zero; NULL for NULL. '
    'acquire_proxy, renew_proxy_lease, block_proxy, requeue_stale_tasks and the settings refuse such '
    'an interval as not positive.';
