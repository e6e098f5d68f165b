-- Back to 0021_maintenance_health: leases lose their bound. The previous settings check, lease
-- trigger and acquire_proxy come back: the downgrade runs their files again.
ALTER TABLE public.proxy_lease_settings DROP COLUMN longest_lease;
