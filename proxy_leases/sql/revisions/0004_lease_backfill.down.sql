-- Back to the state 0003 left: the same rule, not yet validated. Dropping and adding a NOT VALID
-- CHECK touches only the catalog. The leases filled in by the upgrade stay: they are consistent.

ALTER TABLE public.proxies DROP CONSTRAINT proxies_lease_consistent;

ALTER TABLE public.proxies
    ADD CONSTRAINT proxies_lease_consistent CHECK (
        is_in_use IS NOT NULL
        AND is_in_use = (worker_id IS NOT NULL)
        AND is_in_use = (leased_at IS NOT NULL)
        AND is_in_use = (leased_until IS NOT NULL)
    ) NOT VALID;

COMMENT ON CONSTRAINT proxies_lease_consistent ON public.proxies IS
    'A proxy is either free (not in use, no worker, no lease) or held (in use, a worker, a lease).';
