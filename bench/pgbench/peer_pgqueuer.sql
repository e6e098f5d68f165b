-- pgqueuer 1.6.0's QueueManager, one job claimed and finished with batch_size 1 (bench/scenario_peers.py):
-- the claim is Queries.dequeue (build_dequeue_query for one entrypoint, no concurrency limit), the
-- finish Queries.log_jobs (build_log_job_query), each verbatim with the worker's parameters: $1
-- batch_size (1), $2 entrypoints ('{bench}'), $3 queue_manager_id (one uuid per client), $4
-- heartbeat_timeout (30 s). Two transactions (pgqueuer runs on autocommit connections).
-- Fires: the claim's UPDATE runs the statement trigger tg_pgqueuer_changed (which sends nothing for an
-- UPDATE) and inserts a pgqueuer_log row ('picked'); the finish DELETEs the job, whose statement
-- trigger sends one pg_notify('ch_pgqueuer'), and inserts a pgqueuer_log row ('successful').
\set batch 1
WITH
available AS (
    SELECT UNNEST('{bench}'::text[]) AS entrypoint
),
next_queued AS (
    SELECT job.id, job.priority
    FROM available
    CROSS JOIN LATERAL (
        SELECT candidate.id, candidate.priority
        FROM pgqueuer candidate
        WHERE candidate.entrypoint = available.entrypoint
          AND candidate.status = 'queued'
          AND candidate.execute_after < NOW()
        ORDER BY candidate.priority DESC, candidate.id ASC
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ) job
    ORDER BY job.priority DESC, job.id ASC
    LIMIT :batch
),
next_stale AS (
    SELECT stale.id, stale.priority
    FROM pgqueuer stale
    WHERE stale.status = 'picked'
      AND stale.entrypoint = ANY('{bench}'::text[])
      AND stale.heartbeat < NOW() - '30 seconds'::interval
      AND stale.execute_after < NOW()
    ORDER BY stale.priority DESC, stale.id ASC
    FOR UPDATE SKIP LOCKED
    LIMIT :batch
),
eligible AS (
    SELECT id FROM (
        SELECT id, priority FROM next_queued
        UNION ALL
        SELECT id, priority FROM next_stale
    ) combined
    ORDER BY priority DESC, id ASC
    LIMIT :batch
),
claimed AS (
    UPDATE pgqueuer
    SET status = 'picked',
        updated   = NOW(),
        heartbeat = NOW(),
        queue_manager_id = ('00000000-0000-0000-0000-' || lpad(:client_id::text, 12, '0'))::uuid
    WHERE id IN (SELECT id FROM eligible)
    RETURNING *
),
log_pick AS (
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, status, entrypoint, priority FROM claimed
)
SELECT * FROM claimed ORDER BY priority DESC, id ASC \gset job_
WITH job_status AS (
    SELECT
        UNNEST(ARRAY[:job_id]::bigint[])                            AS id,
        UNNEST(ARRAY['successful']::pgqueuer_status[]) AS status,
        UNNEST(ARRAY[NULL]::JSONB[])                             AS traceback
), deleted AS (
    DELETE FROM pgqueuer
    WHERE id = ANY(SELECT js.id FROM job_status js WHERE js.status != 'failed')
    RETURNING id, entrypoint, priority
), held AS (
    UPDATE pgqueuer
    SET status = 'failed', updated = NOW(), queue_manager_id = NULL
    WHERE id = ANY(SELECT js.id FROM job_status js WHERE js.status = 'failed')
    RETURNING id, entrypoint, priority
), all_resolved AS (
    SELECT id, entrypoint, priority FROM deleted
    UNION ALL
    SELECT id, entrypoint, priority FROM held
), merged AS (
    SELECT
        job_status.id           AS id,
        job_status.status       AS status,
        job_status.traceback    AS traceback,
        all_resolved.entrypoint AS entrypoint,
        all_resolved.priority   AS priority
    FROM job_status
    INNER JOIN all_resolved
        ON all_resolved.id = job_status.id
)
INSERT INTO pgqueuer_log (
    job_id,
    status,
    entrypoint,
    priority,
    traceback
)
SELECT id, status, entrypoint, priority, traceback FROM merged;
