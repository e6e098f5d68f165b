-- What 0004_lease_backfill.sql is about to change, said before it changes it. The revision predates
-- the audit trail (0010_lease_events), so this NOTICE is the backfill's only trace: psql prints it,
-- and an online upgrade passes it on and quotes it in its end-of-run summary. It reads the rows the
-- backfill's two UPDATEs select, in the same transaction, and changes nothing.
DO $report$
DECLARE
    v_leased bigint[];
    v_freed bigint[];
BEGIN
    SELECT array_agg(id ORDER BY id) INTO v_leased
      FROM public.proxies
     WHERE is_in_use AND worker_id IS NOT NULL AND leased_until IS NULL;
    SELECT array_agg(id ORDER BY id) INTO v_freed
      FROM public.proxies
     WHERE is_in_use IS NULL
        OR (is_in_use AND worker_id IS NULL)
        OR (NOT is_in_use AND worker_id IS NOT NULL);
    IF v_leased IS NOT NULL THEN
        RAISE NOTICE 'proxy-leases backfill: 0004_lease_backfill gives % held proxies a lease from now: ids %',
            cardinality(v_leased),
            array_to_string(v_leased[1:20], ', ') || CASE WHEN cardinality(v_leased) > 20 THEN ', ...' ELSE '' END;
    END IF;
    IF v_freed IS NOT NULL THEN
        RAISE NOTICE 'proxy-leases backfill: 0004_lease_backfill frees % half-held proxies (in use with no worker, a worker but not in use, or in use unknown): ids %',
            cardinality(v_freed),
            array_to_string(v_freed[1:20], ', ') || CASE WHEN cardinality(v_freed) > 20 THEN ', ...' ELSE '' END;
    END IF;
END
$report$;
