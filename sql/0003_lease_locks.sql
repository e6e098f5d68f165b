-- Take every lock this revision needs before changing anything, in the order the fleet's own
-- transactions take them (a task row, then its proxy row). While these wait, the revision holds
-- nothing on proxies; lock_timeout (see env.py) bounds the wait and fails the revision cleanly.
-- Once taken, the rest of the revision changes only the catalog and commits in milliseconds.

LOCK TABLE public.catalog_tasks, public.object_tasks IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE public.proxies IN ACCESS EXCLUSIVE MODE;
