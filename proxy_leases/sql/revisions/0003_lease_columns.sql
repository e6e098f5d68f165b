-- The lease itself, on each proxy row. Adding nullable columns without a default is instant, and
-- the consistency rule is added NOT VALID: no scan of the table under this revision's lock. The
-- next revision fills in the rows held today and validates the rule without blocking writers.

ALTER TABLE public.proxies
    ADD COLUMN leased_at timestamptz,
    ADD COLUMN leased_until timestamptz;

COMMENT ON COLUMN public.proxies.leased_at IS
    'When the current holder was granted the proxy; NULL when free.';
COMMENT ON COLUMN public.proxies.leased_until IS
    'When the current lease ends unless renewed (any task heartbeat of the holder renews it); NULL when free.';

ALTER TABLE public.proxies
    ADD CONSTRAINT proxies_lease_consistent CHECK (
        is_in_use IS NOT NULL
        AND is_in_use = (worker_id IS NOT NULL)
        AND is_in_use = (leased_at IS NOT NULL)
        AND is_in_use = (leased_until IS NOT NULL)
    ) NOT VALID;

COMMENT ON CONSTRAINT proxies_lease_consistent ON public.proxies IS
    'A proxy is either free (not in use, no worker, no lease) or held (in use, a worker, a lease).';
