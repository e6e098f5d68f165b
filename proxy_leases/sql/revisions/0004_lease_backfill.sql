-- Bring the rows that existed before the lease under the consistency rule, then validate it.
-- This revision takes no table lock that blocks the fleet's reads or writes: the UPDATEs lock only
-- the rows they change (kept until the revision commits, after the validation scan), and
-- VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE.

-- Proxies held at upgrade time get a full lease from now: a live worker is not cut off. Those whose
-- worker is already gone are freed by the first sweep once orphan_grace has passed.
UPDATE public.proxies
   SET leased_at = now(),
       leased_until = now() + (SELECT s.lease_duration FROM public.proxy_lease_settings s)
 WHERE is_in_use AND worker_id IS NOT NULL AND leased_until IS NULL;

-- Rows that no rule could read: in use by nobody, a worker but not in use, or in use unknown.
-- The trigger turns each into a free proxy; is_blocked is left as it is.
UPDATE public.proxies
   SET is_in_use = false, worker_id = NULL
 WHERE is_in_use IS NULL
    OR (is_in_use AND worker_id IS NULL)
    OR (NOT is_in_use AND worker_id IS NOT NULL);

ALTER TABLE public.proxies VALIDATE CONSTRAINT proxies_lease_consistent;
