-- What 0007_lease_api_backfill.sql is about to change, said before it changes it, as
-- 0004_lease_backfill_report.sql does for 0004 (the audit trail comes in 0010). Changes nothing.
DO $report$
DECLARE
    v_tokened bigint[];
BEGIN
    SELECT array_agg(id ORDER BY id) INTO v_tokened
      FROM public.proxies
     WHERE is_in_use AND lease_token IS NULL;
    IF v_tokened IS NOT NULL THEN
        RAISE NOTICE 'proxy-leases backfill: 0007_lease_api_backfill gives % held proxies a fencing token: ids %',
            cardinality(v_tokened),
            array_to_string(v_tokened[1:20], ', ') || CASE WHEN cardinality(v_tokened) > 20 THEN ', ...' ELSE '' END;
    END IF;
END
$report$;
