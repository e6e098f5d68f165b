-- procrastinate 3.10.0's worker, one job claimed and finished (bench/scenario_peers.py): the claim is
-- JobManager.fetch_job's query, procrastinate_fetch_job_v2 (the worker's queues NULL: all queues; its
-- worker id a procrastinate_workers row, one per client); the finish is JobManager.finish_job's,
-- procrastinate_finish_job_v1 with delete_job false, the worker's default (delete_jobs "never").
-- Two transactions, one statement each, as the worker sends them (its psycopg pool adds an empty
-- check query, BEGIN and COMMIT around each: the same server work, three more round trips).
-- Fires: each statement's AFTER UPDATE OF status trigger inserts a procrastinate_events row
-- ('started', then 'succeeded'); the FK on worker_id checks the worker row. No NOTIFY.
\set worker_id :client_id + 1
SELECT id, status, task_name, priority, lock, queueing_lock, args, scheduled_at, queue_name, attempts, worker_id
  FROM procrastinate_fetch_job_v2(NULL::varchar[], :worker_id) \gset job_
SELECT procrastinate_finish_job_v1(:job_id, 'succeeded', false);
