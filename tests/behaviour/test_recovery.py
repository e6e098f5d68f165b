"""Task recovery in the database, strikes and quarantine, wake-ups, and the scheduled maintenance."""

import psycopg
import pytest

from tests.helpers import acquire


@pytest.fixture
def pool(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 5) n")
    return db


def crash_while_processing(database, worker, table="catalog_tasks", beat="now() - interval '6 minutes'"):
    """A worker with a proxy and a task in processing, whose last heartbeat was at `beat`."""
    proxy = acquire(database, worker)
    task_id = database.one(f"INSERT INTO {table} (status, worker_id, heartbeat_at) "
                           f"VALUES ('processing', %s, {beat}) RETURNING id", (worker,))
    return proxy, task_id


def test_requeue_stale_tasks_and_the_trigger_free_a_crashed_workers_proxy_with_no_other_call(pool):
    (dead_proxy, *_), dead_task = crash_while_processing(pool, "dead_1")
    (_, *_), object_task = crash_while_processing(pool, "dead_2", "object_tasks", beat="NULL")
    (live_proxy, *_), live_task = crash_while_processing(pool, "live_1", beat="now() - interval '1 minute'")

    assert pool.one("SELECT requeue_stale_tasks()") == 2
    assert pool.one("SELECT status, worker_id FROM catalog_tasks WHERE id = %s", (dead_task,)) == ("pending", None)
    assert pool.one("SELECT status, worker_id FROM object_tasks WHERE id = %s", (object_task,)) == ("pending", None)
    assert pool.one("SELECT count(*) FROM proxies WHERE worker_id LIKE 'dead%%'") == 0
    assert pool.one("SELECT is_in_use, strike_count FROM proxies WHERE id = %s", (dead_proxy,)) == (False, 1)
    assert pool.one("SELECT status FROM catalog_tasks WHERE id = %s", (live_task,)) == "processing"
    assert pool.one("SELECT worker_id FROM proxies WHERE id = %s", (live_proxy,)) == "live_1"

    assert pool.one("SELECT requeue_stale_tasks('30 seconds')") == 1
    assert pool.one("SELECT is_in_use FROM proxies WHERE id = %s", (live_proxy,)) is False


def test_requeue_skips_a_task_whose_heartbeat_is_being_written_now(pool):
    (proxy_id, *_), task_id = crash_while_processing(pool, "slow_1")
    with pool.connect(autocommit=False) as worker, pool.connect() as job:
        worker.execute("UPDATE catalog_tasks SET heartbeat_at = now() WHERE id = %s", (task_id,))
        job.execute("SET lock_timeout = '100ms'")   # waiting would be an error, not a slow test
        assert job.execute("SELECT requeue_stale_tasks()").fetchone()[0] == 0
        worker.commit()
    assert pool.one("SELECT requeue_stale_tasks()") == 0
    assert pool.one("SELECT worker_id FROM proxies WHERE id = %s", (proxy_id,)) == "slow_1"


def test_a_task_that_ends_done_or_failed_releases_cleanly_and_clears_the_strikes(pool):
    proxy_id, *_ = acquire(pool, "c1_1")
    pool.run("UPDATE proxies SET strike_count = 2 WHERE id = %s", (proxy_id,))
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'c1_1', now())")
    pool.run("UPDATE catalog_tasks SET status = 'done'")
    assert pool.one("SELECT is_in_use, strike_count FROM proxies WHERE id = %s", (proxy_id,)) == (False, 0)


def strike_once(database, proxy_id, how):
    """Reclaim the only free proxy from a worker that died, in one of the ways the database notices."""
    worker = f"c{how}_1"
    granted = acquire(database, worker)
    assert granted[0] == proxy_id
    if how == "sweep":
        database.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s",
                     (proxy_id,))
        assert database.one("SELECT release_stuck_proxies()") == 1
    elif how == "container":
        assert database.one("SELECT release_container_proxies(%s)", (f"c{how}",)) == 1
    elif how == "requeue":
        database.run("INSERT INTO object_tasks (status, worker_id, heartbeat_at) "
                     "VALUES ('processing', %s, now() - interval '1 hour')", (worker,))
        assert database.one("SELECT requeue_stale_tasks()") == 1
    elif how == "block":
        assert database.one("SELECT block_proxy(%s, %s, 'HTTP 429', '1 minute')", (proxy_id, granted[2]))
        database.run("UPDATE proxies SET blocked_until = clock_timestamp() WHERE id = %s", (proxy_id,))
        assert database.one("SELECT unblock_cooled_down_proxies()") == 1


def test_a_proxy_reclaimed_again_and_again_is_quarantined(pool):
    pool.run("UPDATE proxies SET is_blocked = true WHERE id > 1")   # one proxy, so every grant is proxy 1
    strike_once(pool, 1, "sweep")
    strike_once(pool, 1, "container")
    assert pool.one("SELECT strike_count, is_blocked FROM proxies WHERE id = 1") == (2, False)
    strike_once(pool, 1, "requeue")
    strikes, blocked, until, reason = pool.one(
        "SELECT strike_count, is_blocked, blocked_until, blocked_reason FROM proxies WHERE id = 1")
    assert (strikes, blocked, until) == (3, True, None)
    assert reason == "quarantined after 3 strikes in a row; last: reclaimed from a dead worker"
    assert acquire(pool, "c9_1") is None
    with pool.connect() as conn:
        conn.execute("CALL run_lease_maintenance()")
    assert pool.one("SELECT is_blocked FROM proxies WHERE id = 1") is True
    assert pool.one("SELECT unblock_proxy(1)") is True
    assert pool.one("SELECT strike_count, is_blocked FROM proxies WHERE id = 1") == (0, False)


def test_a_clean_release_between_strikes_starts_the_count_again(pool):
    pool.run("UPDATE proxies SET is_blocked = true WHERE id > 1")
    for _ in range(3):
        strike_once(pool, 1, "sweep")
        strike_once(pool, 1, "block")
        proxy_id, _, token, _ = acquire(pool, "good_1")
        assert pool.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is True
        assert pool.one("SELECT strike_count, is_blocked FROM proxies WHERE id = 1") == (0, False)


def test_quarantine_overrides_a_cooldown_and_can_be_switched_off(pool):
    pool.run("UPDATE proxies SET is_blocked = true WHERE id > 1")
    strike_once(pool, 1, "block")
    strike_once(pool, 1, "block")
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    assert pool.one("SELECT block_proxy(%s, %s, 'HTTP 403', '1 minute')", (proxy_id, token))
    assert pool.one("SELECT blocked_until, blocked_reason FROM proxies WHERE id = 1") == (
        None, "quarantined after 3 strikes in a row; last: HTTP 403")

    pool.run("UPDATE proxy_lease_settings SET quarantine_after_strikes = NULL")
    pool.run("SELECT unblock_proxy(1)")
    for _ in range(4):
        strike_once(pool, 1, "sweep")
    assert pool.one("SELECT strike_count, is_blocked FROM proxies WHERE id = 1") == (4, False)


def notifications(conn):
    return [(n.channel, n.payload) for n in conn.notifies(timeout=0.5, stop_after=20)]


def test_a_worker_listening_on_proxy_available_hears_of_every_proxy_it_could_take(pool):
    with pool.connect() as listener:
        listener.execute("LISTEN proxy_available")
        first, _, first_token, _ = acquire(pool, "c1_1")
        second, _, second_token, _ = acquire(pool, "c1_2")
        assert notifications(listener) == []                          # grants are not news

        assert pool.one("SELECT release_proxy(%s, %s)", (first, first_token))
        assert notifications(listener) == [("proxy_available", str(first))]

        assert pool.one("SELECT block_proxy(%s, %s, 'banned')", (second, second_token))
        assert notifications(listener) == []                          # nobody can take it
        pool.run("SELECT unblock_proxy(%s)", (second,))
        assert notifications(listener) == [("proxy_available", str(second))]

        new_id = pool.one("INSERT INTO proxies (address) VALUES ('http://10.9.9.9:3128') RETURNING id")
        pool.run("INSERT INTO proxies (address, is_blocked) VALUES ('http://10.9.9.8:3128', true)")
        assert notifications(listener) == [("proxy_available", str(new_id))]

        with pool.connect(autocommit=False) as rolled_back:
            proxy_id, _, token, _ = rolled_back.execute("SELECT * FROM acquire_proxy('c1_3')").fetchone()
            rolled_back.commit()
            rolled_back.execute("SELECT release_proxy(%s, %s)", (proxy_id, token))
            rolled_back.rollback()
        assert notifications(listener) == []                          # sent at commit, or never


def test_a_pool_with_proxies_to_spare_announces_nothing_and_a_bulk_load_announces_once(pool):
    """Notifying commits queue on one cluster-wide lock: nobody waits while 16 proxies are free."""
    with pool.connect() as listener:
        listener.execute("LISTEN proxy_available")
        first = pool.one("WITH added AS (INSERT INTO proxies (address) SELECT 'http://10.1.0.' || n || ':3128' "
                         "FROM generate_series(1, 1000) n RETURNING id) SELECT min(id) FROM added")
        assert notifications(listener) == [("proxy_available", str(first))]
        proxy_id, _, token, _ = acquire(pool, "c1_1")
        assert pool.one("SELECT release_proxy(%s, %s)", (proxy_id, token))
        assert notifications(listener) == []

        pool.run("UPDATE proxies SET is_blocked = true WHERE id > 16")   # now 16 free, 15 besides any one
        proxy_id, _, token, _ = acquire(pool, "c1_1")
        assert pool.one("SELECT release_proxy(%s, %s)", (proxy_id, token))
        assert notifications(listener) == [("proxy_available", str(proxy_id))]


def test_the_maintenance_runs_every_step_even_when_one_fails_and_then_reports_it(pool):
    """A step that fails (here a rule of the fleet's own on proxies) neither undoes nor stops the others."""
    (_, *_), task_id = crash_while_processing(pool, "dead_1")
    swept, *_ = acquire(pool, "gone_1")
    pool.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s", (swept,))
    pool.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'x', blocked_until = now() WHERE id = 5")
    pool.run("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'blocks are forever here' USING ERRCODE = '55000'; END $$""")
    pool.run("CREATE TRIGGER forever BEFORE UPDATE OF is_blocked ON proxies FOR EACH ROW "
             "WHEN (OLD.is_blocked AND NOT NEW.is_blocked) EXECUTE FUNCTION refuse()")

    with pool.connect() as conn:
        with pytest.raises(psycopg.Error) as failed:
            conn.execute("CALL run_lease_maintenance()")
    assert failed.value.sqlstate == "55000"
    assert "1 of 4 steps failed" in str(failed.value)
    assert ("unblock_cooled_down_proxies(): blocks are forever here (SQLSTATE 55000)"
            in failed.value.diag.message_detail)
    assert pool.one("SELECT status FROM catalog_tasks WHERE id = %s", (task_id,)) == "pending"
    assert pool.one("SELECT is_in_use FROM proxies WHERE id = %s", (swept,)) is False
    assert pool.one("SELECT is_blocked FROM proxies WHERE id = 5") is True

    pool.run("DROP TRIGGER forever ON proxies")
    with pool.connect() as conn:
        assert conn.execute("CALL run_lease_maintenance()").fetchone() == (0, 0, 1)


def test_a_task_the_fleets_own_rules_refuse_to_requeue_does_not_hold_back_the_others(pool):
    refused = [crash_while_processing(pool, f"dead_{n}")[1] for n in range(1, 4)][1]
    object_task = crash_while_processing(pool, "dead_9", "object_tasks")[1]
    pool.run(f"""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN IF NEW.id = {refused} THEN
                        RAISE EXCEPTION 'task {refused} has no retries left' USING ERRCODE = '23514';
                    END IF; RETURN NEW; END $$""")
    pool.run("CREATE TRIGGER retries BEFORE UPDATE ON catalog_tasks FOR EACH ROW EXECUTE FUNCTION refuse()")
    warnings = []
    with pool.connect() as conn:
        # A notice's fields can be read only inside the handler.
        conn.add_notice_handler(lambda notice: warnings.append(
            (notice.severity, notice.message_primary, notice.message_detail)))
        assert conn.execute("SELECT requeue_stale_tasks()").fetchone()[0] == 3
    assert pool.all("SELECT id, status FROM catalog_tasks ORDER BY id") == [
        (refused - 1, "pending"), (refused, "processing"), (refused + 1, "pending")]
    assert pool.one("SELECT status FROM object_tasks WHERE id = %s", (object_task,)) == "pending"
    assert pool.one("SELECT worker_id FROM proxies WHERE is_in_use") == "dead_2"
    assert warnings == [("WARNING", "requeue_stale_tasks: 1 stale task(s) could not be requeued",
                         f"catalog_tasks {refused}: task {refused} has no retries left (SQLSTATE 23514)")]


def test_a_large_backlog_with_refused_rows_is_requeued_in_batches_and_the_warning_stays_short(pool):
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
             "SELECT 'processing', 'gone_' || n, now() - interval '1 hour' FROM generate_series(1, 250) n")
    pool.run("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN IF NEW.id % 10 = 0 THEN RAISE EXCEPTION 'no retries left' USING ERRCODE = '23514'; END IF;
                   RETURN NEW; END $$""")
    pool.run("CREATE TRIGGER retries BEFORE UPDATE ON catalog_tasks FOR EACH ROW EXECUTE FUNCTION refuse()")
    details = []
    with pool.connect() as conn:
        conn.add_notice_handler(lambda notice: details.append(notice.message_detail))
        assert conn.execute("SELECT requeue_stale_tasks()").fetchone()[0] == 225
    assert pool.one("SELECT count(*) FROM catalog_tasks WHERE status = 'processing' AND id % 10 = 0") == 25
    assert pool.one("SELECT count(*) FROM catalog_tasks WHERE status = 'pending'") == 225
    [detail] = details
    lines = detail.splitlines()
    assert len(lines) == 21 and lines[0].startswith("catalog_tasks 10: no retries left") and lines[-1] == "(and 5 more)"


def test_a_task_handed_to_another_worker_is_a_strike_against_the_old_workers_proxy(pool):
    (proxy_id, *_), task_id = crash_while_processing(pool, "dead_1")
    pool.run("UPDATE catalog_tasks SET worker_id = 'live_1', heartbeat_at = now() WHERE id = %s", (task_id,))
    assert pool.one("SELECT is_in_use, strike_count FROM proxies WHERE id = %s", (proxy_id,)) == (False, 1)


def test_an_upgrade_from_the_foundation_gives_proxies_held_now_a_token_and_keeps_them_held(fresh_database):
    database = fresh_database()
    database.upgrade("0005_sweep_schedule")
    database.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 3) n")
    database.run("UPDATE proxies SET is_in_use = true, worker_id = 'c1_' || id WHERE id <= 2")
    held_before = database.all("SELECT id, worker_id, leased_at, leased_until FROM proxies WHERE is_in_use ORDER BY id")

    database.upgrade()
    assert database.all("SELECT id, worker_id, leased_at, leased_until FROM proxies WHERE is_in_use ORDER BY id"
                        ) == held_before
    tokens = database.all("SELECT lease_token FROM proxies WHERE is_in_use ORDER BY id")
    assert all(token is not None for (token,) in tokens)
    assert database.one("SELECT bool_and(convalidated) FROM pg_constraint WHERE conrelid = 'proxies'::regclass "
                        "AND contype = 'c'") is True
    # The worker that took proxy 1 the old way can now use it through the API too, with its token.
    assert acquire(database, "c1_1")[:3:2] == (1, tokens[0][0])


def test_tokens_keep_growing_across_a_downgrade_and_a_new_upgrade(fresh_database):
    """A worker may still hold a token from before a rollback: no later grant may carry it again."""
    database = fresh_database()
    database.upgrade()
    database.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    old_token = acquire(database, "c1_1")[2]
    database.downgrade("0005_sweep_schedule")
    database.upgrade()
    assert database.one("SELECT lease_token FROM proxies WHERE id = 1") > old_token   # the backfill's
    database.run("UPDATE proxies SET is_in_use = false WHERE id = 1")
    assert acquire(database, "c2_1")[2] > old_token
