-- What the sweeper's and the container clean-up's LOG lines say about whose proxies they freed:
-- the containers, most proxies first, each with its count. A crash of a whole container shows as
-- one name with a large count, as in the incident (8b4f59aa (15), b77514be (1)). Twenty names at most, so one
-- line stays one line whatever happened.

CREATE OR REPLACE FUNCTION public.summarize_proxy_holders(worker_ids text[])
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT format('%s container(s): %s%s', count(*),
                  string_agg(format('%s (%s)', c.container_id, c.proxies), ', ' ORDER BY c.proxies DESC, c.container_id)
                      FILTER (WHERE c.rank <= 20),
                  CASE WHEN count(*) > 20 THEN format(' and %s more', count(*) - 20) ELSE '' END)
      FROM (SELECT h.container_id, count(*) AS proxies,
                   row_number() OVER (ORDER BY count(*) DESC, h.container_id) AS rank
              -- A worker id is the fleet's text: a line break in one must not start a forged log line.
              FROM (SELECT coalesce(regexp_replace(split_part(w.worker_id, '_', 1), '[[:cntrl:]]', '?', 'g'),
                                    '(no worker)') AS container_id
                      FROM unnest($1) AS w(worker_id)) h
             GROUP BY h.container_id) c
$$;

COMMENT ON FUNCTION public.summarize_proxy_holders(text[]) IS
    'Given the worker ids of freed proxies, says which containers held them: "2 container(s): 8b4f59aa (15), '
    'e1bf8c63 (1)", most proxies first, at most 20 named. A container is the part of a worker id before '
    'the first "_"; control characters in it are shown as "?". Used by the LOG lines of release_stuck_proxies '
    'and release_container_proxies.';
