-- renew_proxy_lease alone, as a worker renews its grant through the API. Client n holds proxy n + 1;
-- its token is in bench_grants (filled by bench/compare_revisions.py before the run), read in the
-- same statement. One transaction. Every call renews (the API has no 10 % rule).
SELECT renew_proxy_lease(g.proxy_id, g.lease_token) FROM bench_grants g WHERE g.client = :client_id;
