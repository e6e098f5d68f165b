"""The audit trail: every path that changes a grant or a block leaves its event, in the same transaction."""

import psycopg
import pytest

from tests.helpers import acquire, executed_plans, past_the_grace, plan_nodes


@pytest.fixture
def pool(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 5) n")
    return db


def events(database, after=0):
    return database.all("SELECT proxy_id, event, reason, worker_id FROM proxy_lease_events WHERE id > %s ORDER BY id",
                        (after,))


def last_event_id(database):
    return database.one("SELECT coalesce(max(id), 0) FROM proxy_lease_events")


def with_task(database, worker, table="catalog_tasks", beat="now()"):
    return database.one(f"INSERT INTO {table} (status, worker_id, heartbeat_at) VALUES ('processing', %s, {beat}) "
                        "RETURNING id", (worker,))


def release_by_worker(db, proxy_id, token, worker):
    assert db.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is True


def block_by_worker(db, proxy_id, token, worker):
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403', '1 hour')", (proxy_id, token)) is True


def task_done(db, proxy_id, token, worker):
    task = with_task(db, worker)
    db.run("UPDATE catalog_tasks SET status = 'done' WHERE id = %s", (task,))


def task_failed(db, proxy_id, token, worker):
    task = with_task(db, worker, "object_tasks")
    db.run("UPDATE object_tasks SET status = 'failed' WHERE id = %s", (task,))


def task_deleted(db, proxy_id, token, worker):
    task = with_task(db, worker)
    db.run("DELETE FROM catalog_tasks WHERE id = %s", (task,))


def heartbeat_manager_requeues(db, proxy_id, token, worker):
    with_task(db, worker, beat="now() - interval '10 minutes'")
    db.run("UPDATE catalog_tasks SET status = 'pending', worker_id = NULL "
           "WHERE status = 'processing' AND heartbeat_at < now() - interval '5 minutes'")


def requeue_stale_tasks(db, proxy_id, token, worker):
    with_task(db, worker, "object_tasks", beat="now() - interval '10 minutes'")
    assert db.one("SELECT requeue_stale_tasks()") == 1


def task_reassigned(db, proxy_id, token, worker):
    task = with_task(db, worker)
    db.run("UPDATE catalog_tasks SET worker_id = 'other_1' WHERE id = %s", (task,))


def sweep_expired(db, proxy_id, token, worker):
    with_task(db, worker)
    db.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = %s", (proxy_id,))
    assert db.one("SELECT release_stuck_proxies()") == 1


def sweep_orphan(db, proxy_id, token, worker):
    past_the_grace(db)
    assert db.one("SELECT release_stuck_proxies()") == 1


def container_restart(db, proxy_id, token, worker):
    assert db.one("SELECT release_container_proxies(%s)", (worker.split("_")[0],)) == 1


def acquire_again_after_expiry(db, proxy_id, token, worker):
    db.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = %s", (proxy_id,))
    assert acquire(db, worker)[0] != proxy_id


def acquire_again_after_a_block(db, proxy_id, token, worker):
    db.run("UPDATE proxies SET is_blocked = true WHERE id = %s", (proxy_id,))
    assert acquire(db, worker)[0] != proxy_id


def legacy_update(db, proxy_id, token, worker):
    db.run("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = %s", (proxy_id,))


def taken_over_after_expiry(db, proxy_id, token, worker):
    db.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = %s", (proxy_id,))
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'other_1' WHERE id = %s", (proxy_id,))


def proxy_deleted(db, proxy_id, token, worker):
    db.run("DELETE FROM proxies WHERE id = %s", (proxy_id,))


@pytest.mark.parametrize("path, reason", [
    (release_by_worker, "released_by_worker"),
    (block_by_worker, "blocked_by_worker"),
    (task_done, "task_finished"),
    (task_failed, "task_finished"),
    (task_deleted, "task_deleted"),
    (heartbeat_manager_requeues, "requeued"),
    (requeue_stale_tasks, "requeued"),
    (task_reassigned, "reassigned"),
    (sweep_expired, "lease_expired"),
    (sweep_orphan, "orphaned"),
    (container_restart, "container_restart"),
    (acquire_again_after_expiry, "lease_expired"),
    (acquire_again_after_a_block, "blocked_while_held"),
    (legacy_update, "direct_update"),
    (taken_over_after_expiry, "taken_over"),
    (proxy_deleted, "proxy_deleted"),
], ids=lambda value: value if isinstance(value, str) else value.__name__)
def test_every_release_path_leaves_exactly_one_released_event_with_its_reason(pool, path, reason):
    proxy_id, _, token, leased_until = acquire(pool, "c0ffee_1")
    granted = pool.one("SELECT event, reason, worker_id, lease_token, leased_until FROM proxy_lease_events "
                       "WHERE proxy_id = %s", (proxy_id,))
    assert granted == ("granted", "acquired", "c0ffee_1", token, leased_until)

    path(pool, proxy_id, token, "c0ffee_1")

    released = pool.all("SELECT reason, worker_id, lease_token FROM proxy_lease_events "
                        "WHERE event = 'released' AND proxy_id = %s", (proxy_id,))
    assert released == [(reason, "c0ffee_1", token)]


def test_a_block_with_its_release_and_the_unblocks_say_who_and_why(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    mark = last_event_id(pool)
    pool.one("SELECT block_proxy(%s, %s, 'captcha wall', '1 hour')", (proxy_id, token))
    pool.run("UPDATE proxies SET blocked_until = now() - interval '1 ms' WHERE id = %s", (proxy_id,))
    assert pool.one("SELECT unblock_cooled_down_proxies()") == 1
    pool.run("UPDATE proxies SET is_blocked = true WHERE id = %s", (proxy_id,))
    assert pool.one("SELECT unblock_proxy(%s)", (proxy_id,)) is True
    pool.run("UPDATE proxies SET is_blocked = true WHERE id = %s", (proxy_id,))
    pool.run("UPDATE proxies SET is_blocked = false WHERE id = %s", (proxy_id,))
    assert pool.all("SELECT event, reason, detail FROM proxy_lease_events WHERE id > %s ORDER BY id", (mark,)) == [
        ("released", "blocked_by_worker", "captcha wall"),
        ("blocked", "blocked_by_worker", "captcha wall"),
        ("blocked", "direct_update", "captcha wall"),          # the cooldown cut short by hand: another end
        ("unblocked", "cooldown_over", "captcha wall"),
        ("blocked", "direct_update", None),
        ("unblocked", "unblocked_by_operator", None),
        ("blocked", "direct_update", None),
        ("unblocked", "direct_update", None),
    ]


def test_quarantine_is_recorded_as_such(pool):
    pool.run("UPDATE proxy_lease_settings SET quarantine_after_strikes = 2")
    for n in range(2):
        pool.run("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = 1", (f"dead_{n}",))
        assert pool.one("SELECT release_container_proxies('dead')") == 1
    assert pool.all("SELECT event, reason, detail FROM proxy_lease_events WHERE event <> 'granted' ORDER BY id") == [
        ("released", "container_restart", None),
        ("released", "container_restart", "quarantined after 2 strikes in a row; last: reclaimed from a dead worker"),
        ("blocked", "quarantined", "quarantined after 2 strikes in a row; last: reclaimed from a dead worker")]


def test_events_are_written_and_rolled_back_with_the_change_that_caused_them(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    mark = last_event_id(pool)
    with pool.connect(autocommit=False) as conn:
        conn.execute("SELECT release_proxy(%s, %s)", (proxy_id, token))
        assert conn.execute("SELECT count(*) FROM proxy_lease_events WHERE id > %s", (mark,)).fetchone()[0] == 1
        assert events(pool, mark) == []          # not visible to others before the commit
        conn.rollback()
    assert events(pool, mark) == []
    assert pool.one("SELECT lease_token FROM proxies WHERE id = %s", (proxy_id,)) == token

    with pool.connect(autocommit=False) as conn:
        conn.execute("SAVEPOINT before_release")
        conn.execute("SELECT release_proxy(%s, %s)", (proxy_id, token))
        conn.execute("ROLLBACK TO SAVEPOINT before_release")
        conn.commit()
    assert events(pool, mark) == []

    with pool.connect(autocommit=False) as conn:
        conn.execute("SELECT release_proxy(%s, %s)", (proxy_id, token))
        conn.commit()
    assert events(pool, mark) == [(proxy_id, "released", "released_by_worker", "c1_1")]


def test_a_reason_does_not_carry_over_to_a_later_write_in_the_same_transaction(pool):
    first, _, first_token, _ = acquire(pool, "c1_1")
    second, *_ = acquire(pool, "c1_2")
    mark = last_event_id(pool)
    with pool.connect(autocommit=False) as conn:
        conn.execute("SELECT release_proxy(%s, %s)", (first, first_token))
        conn.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = %s", (second,))
        conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'c1_3' WHERE id = %s", (first,))
        conn.commit()
    assert events(pool, mark) == [
        (first, "released", "released_by_worker", "c1_1"),
        (second, "released", "direct_update", "c1_2"),
        (first, "granted", "direct_update", "c1_3"),
    ]


def test_a_release_that_fails_leaves_no_event(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    pool.run("ALTER TABLE proxies ADD CONSTRAINT never_free CHECK (is_in_use) NOT VALID")   # the fleet's own rule
    mark = last_event_id(pool)
    with pytest.raises(psycopg.errors.CheckViolation):
        pool.one("SELECT release_proxy(%s, %s)", (proxy_id, token))
    with pytest.raises(psycopg.errors.CheckViolation):
        pool.run("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = %s", (proxy_id,))
    assert events(pool, mark) == []


def test_renewals_are_not_logged_but_the_last_one_is_kept_as_the_last_sign_of_life(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    task = with_task(pool, "c1_1")
    mark = last_event_id(pool)
    granted_at = pool.one("SELECT renewed_at FROM proxies WHERE id = %s", (proxy_id,))

    pool.one("SELECT renew_proxy_lease(%s, %s)", (proxy_id, token))
    renewed_at = pool.one("SELECT renewed_at FROM proxies WHERE id = %s", (proxy_id,))
    assert renewed_at > granted_at
    pool.run("UPDATE proxies SET leased_until = leased_until - interval '4 minutes' WHERE id = %s", (proxy_id,))
    pool.run("UPDATE catalog_tasks SET heartbeat_at = now() + interval '1 second' WHERE id = %s", (task,))
    beat_renewed_at = pool.one("SELECT renewed_at FROM proxies WHERE id = %s", (proxy_id,))
    assert beat_renewed_at > renewed_at
    # A lease end put in the past (an expiry by hand) is no sign of life; renewed_at cannot be written.
    pool.run("UPDATE proxies SET leased_until = now() - interval '1 second', renewed_at = now() + interval "
             "'1 hour' WHERE id = %s", (proxy_id,))
    assert pool.one("SELECT renewed_at FROM proxies WHERE id = %s", (proxy_id,)) == beat_renewed_at
    assert events(pool, mark) == []

    pool.run("UPDATE catalog_tasks SET status = 'done' WHERE id = %s", (task,))
    assert pool.one("SELECT reason, leased_at < renewed_at, renewed_at FROM proxy_lease_events WHERE id > %s",
                    (mark,)) == ("task_finished", True, beat_renewed_at)


def test_the_trail_is_append_only_and_the_fleets_roles_cannot_write_it(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    with pytest.raises(psycopg.errors.RestrictViolation) as refused:
        pool.run("UPDATE proxy_lease_events SET reason = 'released_by_worker'")
    assert refused.value.diag.message_hint.startswith("Old events are deleted by prune_lease_events()")

    pool.run("CREATE ROLE audited_worker LOGIN IN ROLE proxy_leases_worker")
    try:
        with pool.connect() as worker:
            worker.execute("SET ROLE audited_worker")
            assert worker.execute("SELECT release_proxy(%s, %s)", (proxy_id, token)).fetchone() == (True,)
            assert worker.execute("SELECT in_use FROM proxy_pool_status").fetchone() == (0,)
            for statement in ("INSERT INTO proxy_lease_events (proxy_id, event, reason) VALUES (1, 'granted', 'x')",
                              "DELETE FROM proxy_lease_events", "SELECT * FROM proxy_lease_events",
                              "UPDATE proxies SET is_in_use = false", "SELECT * FROM proxy_recoveries"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    worker.execute(statement)
    finally:
        pool.run("DROP OWNED BY audited_worker; DROP ROLE audited_worker")
    assert pool.one("SELECT reason, db_user FROM proxy_lease_events WHERE event = 'released'") == (
        "released_by_worker", "audited_worker")


def test_retention_deletes_old_events_only_in_bounded_batches(pool):
    pool.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason) "
             "SELECT now() - interval '31 days' - n * interval '1 second', 1, 'granted', 'acquired' "
             "FROM generate_series(1, 250) n")
    acquire(pool, "c1_1")
    recent = pool.all("SELECT id FROM proxy_lease_events WHERE occurred_at > now() - interval '1 day'")
    pool.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason) "
             "VALUES (now() - interval '29 days', 2, 'granted', 'acquired')")

    assert pool.one("SELECT prune_lease_events(100)") == 100
    # The oldest went first: what is left of the old ones is the newest 150, one second apart.
    assert pool.one("SELECT count(*) FROM proxy_lease_events "
                    "WHERE occurred_at < now() - interval '31 days' - interval '150.5 seconds'") == 0
    with pool.connect() as conn:
        assert conn.execute("CALL run_lease_maintenance()").fetchone() == (0, 0, 0)  # and the 150 pruned: below
    assert pool.one("SELECT prune_lease_events()") == 0
    assert pool.one("SELECT count(*) FROM proxy_lease_events") == len(recent) + 1

    pool.run("UPDATE proxy_lease_settings SET event_retention = '1 day'")
    assert pool.one("SELECT prune_lease_events()") == 1
    pool.run("UPDATE proxy_lease_settings SET event_retention = NULL")
    pool.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason) "
             "VALUES (now() - interval '10 years', 3, 'granted', 'acquired')")
    assert pool.one("SELECT prune_lease_events()") == 0

    with pytest.raises(psycopg.errors.InvalidParameterValue):
        pool.one("SELECT prune_lease_events(0)")
    with pytest.raises(psycopg.errors.CheckViolation):
        pool.run("UPDATE proxy_lease_settings SET event_retention = '-1 day'")


def test_a_takeover_ends_the_old_grant_when_the_new_one_begins(pool):
    proxy_id, *_ = acquire(pool, "c1_1")
    mark = last_event_id(pool)
    taken_over_after_expiry(pool, proxy_id, None, "c1_1")

    rows = pool.all("SELECT event, reason, worker_id, occurred_at FROM proxy_lease_events WHERE id > %s ORDER BY id",
                    (mark,))
    new_grant_at = pool.one("SELECT leased_at FROM proxies WHERE id = %s", (proxy_id,))
    assert rows == [("released", "taken_over", "c1_1", new_grant_at), ("granted", "direct_update", "other_1", new_grant_at)]
    # docs/watching.md's "who held it at T" query: at the takeover itself, and after it, the new holder.
    for moment in (new_grant_at, "infinity"):
        assert pool.one("SELECT event || ' ' || worker_id FROM proxy_lease_events WHERE proxy_id = %s "
                        "AND event IN ('granted', 'released') AND occurred_at <= %s "
                        "ORDER BY occurred_at DESC, id DESC LIMIT 1",
                        (proxy_id, moment)) == "granted other_1"


def test_a_block_replaced_while_blocked_is_recorded(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    pool.one("SELECT block_proxy(%s, %s, 'captcha wall', '1 hour')", (proxy_id, token))
    mark = last_event_id(pool)
    pool.run("UPDATE proxies SET blocked_reason = 'banned by the site', blocked_until = NULL WHERE id = %s", (proxy_id,))
    pool.run("UPDATE proxies SET blocked_at = blocked_at WHERE id = %s", (proxy_id,))   # no change, no event
    pool.run("UPDATE proxy_lease_settings SET quarantine_after_strikes = 1")
    other, *_ = acquire(pool, "c2_1")
    pool.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'slow', blocked_until = now() + interval '1 hour' "
             "WHERE id = %s", (other,))                                                # a cooldown, while held
    assert pool.one("SELECT release_container_proxies('c2')") == 1                    # a strike: quarantined

    quarantined = "quarantined after 1 strikes in a row; last: reclaimed from a dead worker"
    assert pool.all("SELECT proxy_id, event, reason, detail FROM proxy_lease_events WHERE id > %s AND event <> 'granted' "
                    "ORDER BY id", (mark,)) == [
        (proxy_id, "blocked", "direct_update", "banned by the site"),
        (other, "blocked", "direct_update", "slow"),
        (other, "released", "container_restart", quarantined),
        (other, "blocked", "quarantined", quarantined),
    ]


def test_a_statement_whose_own_triggers_write_keeps_its_reason(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    task = with_task(pool, "c1_1")
    # The fleet's own trigger, which fires before the audit trigger (names sort): a blocked proxy fails
    # its worker's task, and the task trigger runs inside block_proxy's statement.
    pool.run("""
        CREATE FUNCTION fail_the_task_of_a_blocked_proxy() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE public.catalog_tasks SET status = 'failed' WHERE worker_id = OLD.worker_id AND status = 'processing';
            RETURN NULL;
        END $$;
        CREATE TRIGGER a_fleet_fails_the_task AFTER UPDATE OF is_blocked ON proxies
            FOR EACH ROW WHEN (NEW.is_blocked) EXECUTE FUNCTION fail_the_task_of_a_blocked_proxy();
    """)
    mark = last_event_id(pool)
    assert pool.one("SELECT block_proxy(%s, %s, 'captcha wall')", (proxy_id, token)) is True

    assert pool.one("SELECT status FROM catalog_tasks WHERE id = %s", (task,)) == "failed"
    assert pool.all("SELECT event, reason FROM proxy_lease_events WHERE id > %s ORDER BY id", (mark,)) == [
        ("released", "blocked_by_worker"), ("blocked", "blocked_by_worker")]


def test_truncate_records_every_held_proxy_as_released(pool):
    held = [acquire(pool, f"c1_{n}")[0] for n in (1, 2)]
    mark = last_event_id(pool)
    pool.run("TRUNCATE proxies CASCADE")
    assert sorted(events(pool, mark)) == sorted([(held[0], "released", "proxy_deleted", "c1_1"),
                                                 (held[1], "released", "proxy_deleted", "c1_2")])


def test_the_operator_role_runs_the_maintenance_and_prunes_a_worker_role_does_neither(pool):
    pool.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason) "
             "SELECT now() - interval '40 days', 1, 'granted', 'acquired' FROM generate_series(1, 3)")
    pool.run("CREATE ROLE fleet_maintenance LOGIN IN ROLE proxy_leases_worker")
    try:
        with pool.connect() as conn:
            conn.execute("SET ROLE fleet_maintenance")
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:   # a worker runs no clean-up
                conn.execute("CALL run_lease_maintenance()")
            assert "prune_lease_events()" in refused.value.diag.message_detail
            assert "4 of 4 steps failed" in refused.value.diag.message_primary
            conn.execute("RESET ROLE")
            conn.execute("GRANT proxy_leases_operator TO fleet_maintenance")
            conn.execute("SET ROLE fleet_maintenance")
            assert conn.execute("CALL run_lease_maintenance()").fetchone() == (0, 0, 0)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM proxy_lease_events")
    finally:
        pool.run("DROP OWNED BY fleet_maintenance; DROP ROLE fleet_maintenance")
    assert pool.one("SELECT count(*) FROM proxy_lease_events WHERE occurred_at < now() - interval '30 days'") == 0


def test_pruning_reads_only_the_events_past_retention(pool):
    pool.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason) "
             "SELECT now() - n * interval '1 minute', 1, 'granted', 'acquired' FROM generate_series(1, 20000) n")
    pool.run("ANALYZE proxy_lease_events")
    pruned, plans = executed_plans(pool, "SELECT prune_lease_events()")
    assert pruned == [(0,)]
    reads = [node for plan in plans for node in plan_nodes(plan)
             if node.get("Relation Name") == "proxy_lease_events" and node["Node Type"] != "ModifyTable"]
    assert {(node["Node Type"], node["Index Name"]) for node in reads} == {
        ("Index Scan", "proxy_lease_events_occurred_at_idx"), ("Index Scan", "proxy_lease_events_pkey")}
    # Bounded by the cutoff, not a walk through every younger event filtered one by one.
    oldest_first = next(node for node in reads if node["Index Name"] == "proxy_lease_events_occurred_at_idx")
    assert "occurred_at <" in oldest_first.get("Index Cond", "") and "Filter" not in oldest_first, oldest_first


def test_a_cooldown_given_over_an_open_ended_block_keeps_it_and_is_not_a_quarantine(pool):
    """Since 0016 a ban never shortens a block in place: the operator's open-ended block stays, and
    the strike that reaches the threshold does not turn it into a quarantine."""
    pool.run("UPDATE proxy_lease_settings SET quarantine_after_strikes = 3")
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    pool.run("UPDATE proxies SET strike_count = 2, is_blocked = true, blocked_reason = 'operator' WHERE id = %s",
             (proxy_id,))
    mark = last_event_id(pool)
    assert pool.one("SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy_id, token)) is True

    assert pool.one("SELECT blocked_until, blocked_reason, strike_count FROM proxies WHERE id = %s", (proxy_id,)) == (
        None, "operator", 3)
    assert pool.all("SELECT event, reason, detail FROM proxy_lease_events WHERE id > %s ORDER BY id", (mark,)) == [
        ("released", "blocked_by_worker", None)]


def test_a_renewal_for_less_time_than_is_left_is_still_a_sign_of_life(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1", lease="1 hour")
    assert pool.one("SELECT renew_proxy_lease(%s, %s)", (proxy_id, token)) is not None
    assert pool.one("SELECT renewed_at > leased_at, leased_until < now() + interval '10 minutes' FROM proxies "
                    "WHERE id = %s", (proxy_id,)) == (True, True)


def test_truncate_outside_read_committed_is_refused(pool):
    acquire(pool, "c1_1")
    mark = last_event_id(pool)
    with pool.connect(autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as refused:
            conn.execute("TRUNCATE proxies CASCADE")
        assert "READ COMMITTED" in refused.value.diag.message_hint
    assert pool.one("SELECT count(*) FROM proxies") == 5 and events(pool, mark) == []


def test_an_unblock_and_a_grant_in_one_statement_read_in_order(pool):
    pool.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'slow' WHERE id = 1")
    mark = last_event_id(pool)
    pool.run("UPDATE proxies SET is_blocked = false, is_in_use = true, worker_id = 'c1_1' WHERE id = 1")
    rows = pool.all("SELECT event, occurred_at FROM proxy_lease_events WHERE id > %s ORDER BY id", (mark,))
    assert [event for event, _ in rows] == ["unblocked", "granted"]
    assert rows[0][1] == rows[1][1] == pool.one("SELECT leased_at FROM proxies WHERE id = 1")


def test_a_block_worded_like_a_quarantine_below_the_threshold_is_not_one(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    assert pool.one("SELECT block_proxy(%s, %s, 'quarantined after 1 strikes in a row; last: me', NULL)",
                    (proxy_id, token)) is True
    assert pool.one("SELECT reason FROM proxy_lease_events WHERE event = 'blocked'") == "blocked_by_worker"
