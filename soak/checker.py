"""The independent checker: its own connection, sampling the proxies table and the workers' records.

Each invariant, precisely (a violation is counted once per distinct key given in brackets, however many
samples see it):

I1  No proxy is used by two workers at once. A worker's fenced calls are its only proof that it still
    holds a grant: an acquire_proxy reply (P, T) received at time a, then renew_proxy_lease or
    release_proxy on (P, T) that succeeded, the last one sent at time z. If the database is right, T was
    P's grant at every server time in [a, z] (a token, once gone, never comes back), so [a, z] is a time
    the worker provably held P. A worker that was paused past its lease still *believes* it holds P, and
    may even scrape through it, but its fenced calls fail, so its interval does not grow: that is
    allowed. block_proxy true is a proof only when the trail says that this very call released T (T's
    `released` event has reason blocked_by_worker): since block_proxy v5 (0016_decide_after_lock) true
    also means "T had already ended (swept, say) and nobody was granted P since, so the free proxy was
    blocked (or was already)", which proves nothing about T; such a block is judged at the end, with the
    trail, by (e). Violations:
      (a) the proof intervals of two different grants of one proxy overlap  [proxy, token, token]
          (checked live, as the records change, and at the end for the blocks the trail confirms; two
          workers told the same grant count too);
      (b) at the end, against the audit trail proxy_lease_events: a proof interval not inside the
          trail's [granted, released] of that token, or a grant the trail gives to another worker
          [proxy, token];
      (c) at the end, in the trail itself: a proxy granted while another grant of it is still on,
          a release of a token that is not the current grant, or a token not above the proxy's
          earlier ones  [event id].
      (d) at the end: a grant freed by the sweep for an expired lease (reason lease_expired) before
          the lease its worker last renewed ran out: released earlier than lease_duration after that
          renew_proxy_lease was sent  [proxy, token]. Without it, a sweep that freed live leases would
          go unseen: the worker's next renewal is fenced out, so no two proof intervals overlap.
      (e) at the end: a block_proxy on (P, T) that returned true although the trail shows P granted
          under a later token before the call was sent (v5 returns false when P was granted again
          since T)  [proxy, token, 'block'].
I2  No blocked proxy is held: a sample showing is_blocked and is_in_use on one row  [proxy, token]; at the
    end, a `granted` event in the trail while the proxy's last block event is not undone [event id];
    and, at the end, an acquire_proxy reply (P, T), sent at s and received at r, while the trail shows P
    blocked all along [s, r]: a `blocked` event of P before s and no `unblocked` event of P until after
    r  [proxy, token, 'acquired_while_blocked', s] (not counted again when T's own `granted` event was
    counted by the trail check). The last catches acquire_proxy handing the worker back the grant it
    holds (same token, no new `granted` event) on a proxy blocked meanwhile, which acquire_proxy v4 did
    when the block came while the call waited for the row. (The soak never blocks a held proxy by hand,
    which an operator's UPDATE may do.)
I3  Every proxy of a dead worker is free within lease_duration + one sweep period (+ i3_allowance, see
    SoakConfig). A worker is silent from the moment it was killed or paused and nothing of its can
    reach the database any more (soak/gate.py). A sample that shows a proxy held by a worker silent
    for longer than the bound is a violation [worker, proxy, token, silent since]. Nothing frees a proxy
    while the server is down: a server crash that begins before the bound is up pushes it back to one
    sweep period (+ i3_allowance) after the server accepts connections again, if that is later. The
    figure reported is, per (silent worker, grant held when it fell silent), the time from the silence
    to the first sample showing the grant gone while the worker was still silent, i.e. at most
    sample_every late; holds that ended because a paused worker resumed, and holds across a server
    crash, are counted apart.
I4  The number of proxies never changes: count(*) of proxies in a sample differs from the count at the
    start  [the count seen].
I5  No row breaks the consistency rule, checked here in the checker's own query, not by trusting the
    CHECK constraints (sql/revisions/0003_lease_columns.sql, 0006_lease_api_columns.sql) or the trigger
    tg_proxies__keep_lease_consistent (v3) that enforce it:
      lease        is_in_use is not NULL, and worker_id, leased_at and leased_until are set iff is_in_use;
      token        lease_token is set iff is_in_use;
      block        blocked_at, blocked_until, blocked_reason only while is_blocked; is_blocked not NULL;
      blocked_at   a blocked proxy has blocked_at (the trigger stamps it);
      renewal      a held proxy has leased_at <= renewed_at and leased_until > leased_at; a free one has
                   no renewed_at;
      strikes      strike_count >= 0, and below quarantine_after_strikes unless blocked (reaching it blocks);
      worker_id    a holder's id is <container_id>_<n> (docs/install.md, "The contract");
      token_order  a proxy's token never goes down from one sample to the next (a later grant of a
                   proxy always carries a larger token)  [proxy, rule, token].
I6  A renewal or release succeeds only while the lease it names runs, on the database's clock as it is
    after the call got the row lock (issue 14: v3 of both judged the lease before waiting for the row).
    Violations:
      (a) renew_proxy_lease returned a leased_until already past when its reply arrived (by more than
          EPSILON): it renewed a lease that had ended, from a clock read before a wait longer than the
          lease  [proxy, token, 'renew', sent at];
      (b) a renew_proxy_lease or release_proxy that succeeded although it was sent more than
          lease_duration (+ EPSILON) after the worker's last statement came back, none of its statements
          being in flight: every statement that can extend a lease is the worker's own (acquire_proxy
          asked again, renew_proxy_lease, a task heartbeat through its trigger) and sets it to at most
          its reply + lease_duration (soak/records.py), so the lease had ended before the call was sent,
          and an ended lease never comes back  [proxy, token, 'renew', sent at] or
          [proxy, token, 'release'];
      (c) at the end, in the trail: a `released` event with reason released_by_worker whose occurred_at
          is past (by more than EPSILON) the leased_until it carries, the lease end at that release
          [proxy, token, 'release'] (one release of a grant: (b) and (c) count it once).
    (b) only sees leases that ended before the call was sent; one that ran out while the call waited for
    a lock shows as (a) for a renewal whose wait was longer than the lease, and as (c) for a release.
    block_proxy is not judged here: since v5 it releases a grant still holding the proxy even past its
    lease end (not yet swept), by design; I1 (e) judges what it may no longer do.
I7  A server crash loses nothing committed and keeps nothing uncommitted. Checked once the restarted server
    accepts connections, in one REPEATABLE READ snapshot, for every grant a worker received before the
    new server started (its acquire_proxy ran in autocommit: the reply came after the COMMIT):
      (a) the trail has that grant, of that proxy with that token to that worker  [crash, proxy, token];
      (b) unless the trail shows it released, the proxies row holds it still, by that worker under that
          token  [crash, proxy, token];
      (c) the probe, a transaction the fault left open at the kill (a proxy inserted, a grant taken for
          crashprobe_<n>), left nothing: no such proxy, no row held by it, no event of it  [crash].
I8  Fencing tokens keep increasing across a server crash, which is not a given: a sequence is written to
    the WAL 32 values ahead and comes back from there. Above the highest token the old server granted
    (its trail, and every token a worker received from it) must be
      (a) the sequence's next value, read right after the restart  [crash, 'sequence'];
      (b) at the end, every token the trail shows granted since the restart  [crash, 'first token'].
I9  The pool is whole at the end, with the fleet stopped: every proxy still held is held by a worker of the
    run, one that did not stop cleanly (those give back what they hold), under the token the trail last
    granted it  [proxy, 'holder']; and once release_container_proxies has run for every container of the
    run (each container's next start-up), none is held: every proxy is free or blocked  [proxy, 'after'].
    This frees the dead workers' proxies that no sweep freed yet; I3 bounds how long they stayed held.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg

from soak.records import DEAD, PAUSED, FencedCall, Grant, Records, ServerCrash

SAMPLE = """
SELECT extract(epoch FROM clock_timestamp())::float8, p.id, p.is_in_use, p.worker_id, p.is_blocked, p.lease_token,
       array_remove(ARRAY[
         CASE WHEN (p.is_in_use IS NOT NULL AND p.is_in_use = (p.worker_id IS NOT NULL)
                    AND p.is_in_use = (p.leased_at IS NOT NULL) AND p.is_in_use = (p.leased_until IS NOT NULL))
              IS NOT TRUE THEN 'lease' END,
         CASE WHEN (p.is_in_use = (p.lease_token IS NOT NULL)) IS NOT TRUE THEN 'token' END,
         CASE WHEN (p.is_blocked IS NOT NULL AND (p.is_blocked OR (p.blocked_at IS NULL AND p.blocked_until IS NULL
                    AND p.blocked_reason IS NULL))) IS NOT TRUE THEN 'block' END,
         CASE WHEN (NOT p.is_blocked OR p.blocked_at IS NOT NULL) IS NOT TRUE THEN 'blocked_at' END,
         CASE WHEN (CASE WHEN p.is_in_use THEN p.leased_at <= p.renewed_at AND p.leased_until > p.leased_at
                         ELSE p.renewed_at IS NULL END) IS NOT TRUE THEN 'renewal' END,
         CASE WHEN (p.strike_count >= 0 AND (p.is_blocked OR s.quarantine_after_strikes IS NULL
                    OR p.strike_count < s.quarantine_after_strikes)) IS NOT TRUE THEN 'strikes' END,
         CASE WHEN (NOT p.is_in_use OR p.worker_id ~ '^[A-Za-z0-9][A-Za-z0-9.:-]{0,127}_[0-9]+$') IS NOT TRUE
              THEN 'worker_id' END
       ], NULL)
  FROM proxies p CROSS JOIN proxy_lease_settings s
"""

TRAIL = """
SELECT id, extract(epoch FROM occurred_at)::float8, proxy_id, event, reason, worker_id, lease_token,
       extract(epoch FROM leased_until)::float8
  FROM proxy_lease_events WHERE id > %s ORDER BY proxy_id, id
"""

EPSILON = 0.005  # client and server read the same host clock; this covers rounding only


@dataclass
class Violations:
    keys: dict[str, set] = field(default_factory=lambda: {f"I{n}": set() for n in range(1, 10)})
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, invariant: str, key: object, what: str) -> None:
        if key not in self.keys[invariant]:
            self.keys[invariant].add(key)
            if len(self.examples[invariant]) < 10:
                self.examples[invariant].append(what)

    def counts(self) -> dict[str, int]:
        return {name: len(keys) for name, keys in self.keys.items()}


class Checker:
    def __init__(self, url: str, records: Records, bound: float, lease: float) -> None:
        self.url = url
        self.connected_at = time.time()
        self.conn = self._connect()
        self.records, self.bound, self.lease = records, bound, lease
        self.samples_lost_to_server_crashes = 0
        self.violations = Violations()
        self.expected_count = self.conn.execute("SELECT count(*) FROM proxies").fetchone()[0]
        self.trail_start = self.conn.execute("SELECT coalesce(max(id), 0) FROM proxy_lease_events").fetchone()[0]
        self.samples = 0
        self.proofs = 0  # fenced calls that succeeded, each checked against the other grants of its proxy
        # I6: renewals and releases that succeeded, each checked against its lease end; and those sent after
        # their lease had provably ended ((b)), by outcome: fenced out (as they must be) or succeeded.
        self.calls_checked = 0
        self.sent_after_lease_end = {"fenced_out": 0, "succeeded": 0}
        self.releases_checked_in_trail = 0  # I6 (c)
        # block_proxy true: proofs (the trail shows the block released the grant), and blocks of grants that
        # had already ended for another reason (v5's block of a free proxy, or a block rolled back).
        self.block_proofs = 0
        self.blocks_of_ended_grants = 0
        self.acquires_checked_against_blocks = 0  # I2, the records' acquire_proxy replies
        self.grants_checked = 0
        self.last_token: dict[int, int] = {}
        self.intervals: dict[int, list[Grant]] = defaultdict(list)  # proxy -> grants with a proof interval
        # (worker, proxy, token, silent since) -> [silent since, first sample without it, freed | resumed]:
        # I3's figures.
        self.silent_holds: dict[tuple[str, int, int], list[float | None]] = {}

    # -- I1 (a): live, from the records ----------------------------------------------------------

    def check_proofs(self) -> None:
        for grant in self.records.take_changed():
            self.check_proof(grant)

    def check_proof(self, grant: Grant) -> None:
        self.proofs += 1
        mine = self.intervals[grant.proxy_id]
        if grant not in mine:
            mine.append(grant)
        for other in mine:
            if other is grant:
                continue
            if other.token == grant.token and other.worker_id != grant.worker_id:
                self.violations.add("I1", (grant.proxy_id, other.token, grant.token),
                                    f"proxy {grant.proxy_id}: grant {grant.token} was given to both "
                                    f"{other.worker_id} and {grant.worker_id}")
            elif other.token != grant.token and max(other.acquired_at, grant.acquired_at) < min(
                    other.proven_until, grant.proven_until):
                key = (grant.proxy_id,) + tuple(sorted((other.token, grant.token)))
                self.violations.add("I1", key, f"proxy {grant.proxy_id}: {other.worker_id} (token {other.token}) "
                                    f"and {grant.worker_id} (token {grant.token}) both proved it held over "
                                    f"{max(other.acquired_at, grant.acquired_at):.3f}..{min(other.proven_until, grant.proven_until):.3f}")

    # -- I6 (a), (b): live, from the records -----------------------------------------------------

    def check_calls(self) -> None:
        for call in self.records.take_calls():
            self.check_call(call)

    def check_call(self, call: FencedCall) -> None:
        ended_before = (call.quiet_since is not None
                        and call.sent_at > call.quiet_since + self.lease + EPSILON)
        if ended_before:
            self.sent_after_lease_end["succeeded" if call.ok else "fenced_out"] += 1
        if not call.ok:
            return
        self.calls_checked += 1
        key = (call.proxy_id, call.token, "release") if call.call == "release" else (
            call.proxy_id, call.token, "renew", call.sent_at)
        what = f"{call.worker_id}: {call.call} of proxy {call.proxy_id} token {call.token} succeeded"
        if ended_before:
            self.violations.add("I6", key, f"{what}, sent {call.sent_at - call.quiet_since - self.lease:.3f} s "
                                f"after its lease had ended at the latest (its worker's last statement came back "
                                f"at {call.quiet_since:.3f}, lease {self.lease:g} s)")
        if call.returned is not None and call.returned < call.replied_at - EPSILON:
            self.violations.add("I6", key, f"{what} and returned a lease end {call.replied_at - call.returned:.3f} s "
                                f"in the past when its reply arrived")

    # -- one sample ------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, application_name="soak:checker")

    def deadline(self, silent_since: float, now: float) -> float:
        """I3: by when a proxy held by a worker silent since `silent_since` must be free, judged at `now` (a
        sample's time, or when the proxy was seen free): only a crash that began before then counts."""
        deadline = silent_since + self.bound
        for killed_at, accepting_at in self.records.outages():
            if killed_at < min(deadline, now):
                deadline = max(deadline, (accepting_at or now) + self.bound - self.lease)
        return deadline

    def sample(self) -> None:
        self.check_proofs()
        self.check_calls()
        workers = {worker_id: (status, silent) for worker_id, status, silent in self.records.snapshot()}
        try:
            if self.conn.closed:
                self.connected_at = time.time()
                self.conn = self._connect()
            for crash in list(self.records.server_crashes):
                if crash.restarted_at is not None and crash.figures is None:
                    self.check_restart(crash)
            rows = self.conn.execute(SAMPLE).fetchall()
        except psycopg.OperationalError:
            # The server was killed since this connection was made, or is down: no sample, no violation.
            if not self.records.lost_to_server_crash(self.connected_at):
                raise
            self.samples_lost_to_server_crashes += 1
            self.conn.close()
            return
        self.samples += 1
        now = rows[0][0] if rows else time.time()
        if len(rows) != self.expected_count:
            self.violations.add("I4", len(rows), f"{len(rows)} proxies, not {self.expected_count}")
        held_by_silent: set[tuple[str, int, int]] = set()
        for _, proxy, in_use, worker_id, blocked, token, broken in rows:
            for rule in broken:
                self.violations.add("I5", (proxy, rule, token), f"proxy {proxy} breaks rule {rule}")
            if token is not None:
                if token < self.last_token.get(proxy, token):
                    self.violations.add("I5", (proxy, "token_order", token),
                                        f"proxy {proxy}: token {token} after {self.last_token[proxy]}")
                self.last_token[proxy] = max(token, self.last_token.get(proxy, token))
            if in_use and blocked:
                self.violations.add("I2", (proxy, token), f"proxy {proxy} is blocked and held by {worker_id}")
            if in_use and worker_id in workers and workers[worker_id][0] in (PAUSED, DEAD):
                silent_since = workers[worker_id][1]
                key = (worker_id, proxy, token, silent_since)
                held_by_silent.add(key)
                self.silent_holds.setdefault(key, [silent_since, None, None])
                if now > self.deadline(silent_since, now):
                    self.violations.add("I3", key, f"proxy {proxy} still held by {worker_id} "
                                        f"{now - silent_since:.1f} s after it went silent (bound {self.bound:.1f} s)")
        for key, hold in self.silent_holds.items():
            if hold[1] is None and key not in held_by_silent:
                hold[1] = now
                # Freed while its worker was still silent, or no longer counted because the worker resumed
                # (a paused worker whose lease was still on, or a later pause of it).
                status, silent_since = workers.get(key[0], (None, None))
                hold[2] = "freed" if status in (PAUSED, DEAD) and silent_since == key[3] else "resumed"

    # -- after a server crash (I7, I8) ------------------------------------------------------------

    def check_restart(self, crash: ServerCrash) -> None:
        before = crash.restarted_at  # what happened before the new server started, the old one did
        with self.records.lock:
            received = [g for w in self.records.workers.values() for g in w.grants if g.acquired_at < before]
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            trail = self.conn.execute(
                "SELECT proxy_id, lease_token, event, worker_id, extract(epoch FROM occurred_at)::float8 "
                "  FROM proxy_lease_events WHERE id > %s AND event IN ('granted', 'released')",
                (self.trail_start,)).fetchall()
            held = {proxy: (worker_id, token) for proxy, worker_id, token in self.conn.execute(
                "SELECT id, worker_id, lease_token FROM proxies WHERE is_in_use").fetchall()}
            probe_left = self.conn.execute(
                "SELECT (SELECT count(*) FROM proxies WHERE worker_id = %(worker)s OR address = %(address)s)"
                "     + (SELECT count(*) FROM proxy_lease_events WHERE worker_id = %(worker)s)",
                {"worker": crash.probe_worker, "address": crash.probe_address}).fetchone()[0]
            last_value, is_called = self.conn.execute(
                "SELECT last_value, is_called FROM proxy_lease_token_seq").fetchone()
        granted = {(proxy, token): worker_id for proxy, token, event, worker_id, _ in trail if event == "granted"}
        released = {(proxy, token) for proxy, token, event, _, _ in trail if event == "released"}
        for grant in received:
            key = (grant.proxy_id, grant.token)
            what = f"crash {crash.number}: {grant.worker_id} received proxy {grant.proxy_id} token {grant.token}"
            if granted.get(key) != grant.worker_id:
                self.violations.add("I7", (crash.number, *key), f"{what}, which the trail after the restart "
                                    + ("lacks" if key not in granted else f"gives to {granted[key]}"))
            elif key not in released and held.get(grant.proxy_id) != (grant.worker_id, grant.token):
                self.violations.add("I7", (crash.number, *key), f"{what}, not released in the trail, but the "
                                    f"row shows {held.get(grant.proxy_id, 'it free')}")
        if probe_left:
            self.violations.add("I7", (crash.number, "uncommitted"), f"crash {crash.number}: {probe_left} rows "
                                f"of the transaction left open at the kill ({crash.probe_worker}) are there")
        tokens_before = max([token for _, token, event, _, at in trail if event == "granted" and at < before]
                            + [grant.token for grant in received], default=None)
        next_token = last_value + 1 if is_called else last_value
        if tokens_before is not None and next_token <= tokens_before:
            self.violations.add("I8", (crash.number, "sequence"), f"crash {crash.number}: the token sequence's "
                                f"next value {next_token} is not above {tokens_before}, granted before the crash")
        crash.figures = {
            "number": crash.number, "grants_checked": len(received), "tokens_before": tokens_before,
            "sequence_before_kill": crash.sequence_before, "sequence_after_restart": crash.sequence_after,
            "next_token_when_checked": next_token, "probe_token": crash.probe_token,
        }

    def check_crashes(self, granted_events: list[tuple[float, str, int]]) -> list[dict]:
        """At the end: I8 (b), and each crash's reconnect waits: from the kill to the first call that
        succeeded on the restarted server, of each worker live at the kill or of the one in its place."""
        granted_events = sorted(granted_events)
        times = [at for at, _, _ in granted_events]
        figures = []
        for crash in self.records.server_crashes:
            if crash.figures is None:  # never seen back up (the run went wrong): nothing to check
                continue
            after = granted_events[bisect_right(times, crash.restarted_at):]
            first_token = min((token for _, _, token in after), default=None)
            tokens_before = crash.figures["tokens_before"]
            if None not in (first_token, tokens_before) and first_token <= tokens_before:
                self.violations.add("I8", (crash.number, "first token"), f"crash {crash.number}: token "
                                    f"{first_token} granted after the restart, not above {tokens_before}, "
                                    f"granted before the crash")
            waits = {slot: at - crash.killed_at for slot, at in crash.back.items()}
            async_waits = [wait for slot, wait in waits.items() if slot in crash.async_slots]
            figures.append({
                **crash.figures, "down_s": round(crash.accepting_at - crash.killed_at, 3),
                "first_token_after": first_token,
                "workers_live_at_kill": len(crash.worker_slots), "async_workers_live_at_kill": len(crash.async_slots),
                "not_back": sorted((crash.worker_slots | crash.async_slots) - set(waits)),
                "longest_reconnect_wait_s": round(max(waits.values(), default=0.0), 3),
                "longest_async_reconnect_wait_s": round(max(async_waits, default=0.0), 3),
            })
        return figures

    # -- at the end ------------------------------------------------------------------------------

    def check_pool_whole(self, current: dict[int, int | None]) -> dict:
        """I9, with the fleet stopped; `current` is the trail's grant on each proxy it knows."""
        with self.records.lock:
            of_run, stopped = set(self.records.slot_of), set(self.records.stopped_cleanly)
        held = self.conn.execute("SELECT id, worker_id, lease_token FROM proxies WHERE is_in_use ORDER BY id"
                                 ).fetchall()
        for proxy, worker_id, token in held:
            wrong = ("no worker of the run" if worker_id not in of_run else
                     "a worker that stopped cleanly" if worker_id in stopped else
                     f"not under the trail's grant {current[proxy]}" if current.get(proxy, token) != token else None)
            if wrong:
                self.violations.add("I9", (proxy, "holder"), f"proxy {proxy} held at the end by {worker_id} "
                                    f"(token {token}): {wrong}")
        freed = sum(self.conn.execute("SELECT release_container_proxies(%s)", (container,)).fetchone()[0]
                    for container in sorted({worker_id.rsplit("_", 1)[0] for worker_id in of_run}))
        for proxy, worker_id in self.conn.execute("SELECT id, worker_id FROM proxies WHERE is_in_use").fetchall():
            self.violations.add("I9", (proxy, "after"), f"proxy {proxy} still held by {worker_id} after "
                                "release_container_proxies of every container of the run")
        free, blocked = self.conn.execute("SELECT count(*) FILTER (WHERE NOT is_in_use AND NOT is_blocked), "
                                          "count(*) FILTER (WHERE is_blocked) FROM proxies").fetchone()
        return {"held_at_end": len(held), "freed_at_end": freed, "free_at_end": free, "blocked_at_end": blocked}

    def finish(self) -> dict:
        self.sample()
        granted_events, current = self.check_trail()
        crashes = self.check_crashes(granted_events)
        # Holds still open at the end are within the bound (else a sample counted them): censored.
        across = [hold[1] - hold[0] for hold in self.silent_holds.values() if hold[2] == "freed"
                  and self.deadline(hold[0], hold[1]) > hold[0] + self.bound]
        done = [hold[1] - hold[0] for hold in self.silent_holds.values() if hold[2] == "freed"
                and self.deadline(hold[0], hold[1]) <= hold[0] + self.bound]
        resumed = [hold[1] - hold[0] for hold in self.silent_holds.values() if hold[2] == "resumed"]
        still = [time.time() - hold[0] for hold in self.silent_holds.values() if hold[1] is None]
        released = dict(self.conn.execute(
            "SELECT reason, count(*) FROM proxy_lease_events WHERE id > %s AND event = 'released' GROUP BY 1 "
            "ORDER BY 2 DESC", (self.trail_start,)).fetchall())
        unblocked = dict(self.conn.execute(
            "SELECT reason, count(*) FROM proxy_lease_events WHERE id > %s AND event = 'unblocked' GROUP BY 1 "
            "ORDER BY 2 DESC", (self.trail_start,)).fetchall())
        pool = self.check_pool_whole(current)  # last: its releases are the end's, not the run's
        self.conn.close()
        return {
            "unblocked_by_reason": unblocked,
            "released_by_reason": released,
            "samples": self.samples,
            "proofs_checked": self.proofs,
            "grants_checked_against_trail": self.grants_checked,
            "fenced_calls_checked_against_lease_end": self.calls_checked,
            "sent_after_lease_end": dict(self.sent_after_lease_end),
            "worker_releases_checked_in_trail": self.releases_checked_in_trail,
            "block_proofs": self.block_proofs,
            "blocks_of_ended_grants": self.blocks_of_ended_grants,
            "acquires_checked_against_blocks": self.acquires_checked_against_blocks,
            "silent_holds": len(self.silent_holds),
            "freed_silent_holds": len(done),
            "longest_silent_hold_s": max(done, default=0.0),
            "resumed_holds": len(resumed),
            "longest_resumed_hold_s": max(resumed, default=0.0),
            "still_held_at_end": len(still),
            "longest_still_held_s": max(still, default=0.0),
            "bound_s": self.bound,
            "holds_across_server_crashes": len(across),
            "longest_hold_across_server_crash_s": max(across, default=0.0),
            "samples_lost_to_server_crashes": self.samples_lost_to_server_crashes,
            "server_crashes": crashes,
            "grants_checked_across_crashes": sum(crash["grants_checked"] for crash in crashes),
            "longest_reconnect_wait_s": max((crash["longest_reconnect_wait_s"] for crash in crashes), default=0.0),
            "pool_at_end": pool,
            "violations": self.violations.counts(),
            "examples": dict(self.violations.examples),
        }

    def check_trail(self) -> tuple[list[tuple[float, str, int]], dict[int, int | None]]:
        """I1 (b) to (e), I2 and I6 (c) against proxy_lease_events, which the database writes in the same
        transaction as every grant, release, block and unblock. Within a proxy, the order of ids is the
        order of the changes (each is written under the proxy's row lock). Returns every grant as
        (granted at, worker, token), and the trail's current grant of each proxy it knows (None: free)."""
        events = self.conn.execute(TRAIL, (self.trail_start,)).fetchall()
        spans: dict[tuple[int, int], list] = {}  # (proxy, token) -> [worker, granted at, released at, reason]
        grants_of: dict[int, list[tuple[int, float]]] = defaultdict(list)  # proxy -> (token, granted at)
        block_spans: dict[int, list[list]] = defaultdict(list)  # proxy -> [blocked at, unblocked at | None]
        granted_while_blocked: set[tuple[int, int]] = set()
        current: dict[int, int | None] = {}
        blocked: dict[int, bool] = {}
        highest: dict[int, int] = {}
        for event_id, at, proxy, event, reason, worker_id, token, leased_until in events:
            if event == "granted":
                if current.get(proxy) is not None:
                    self.violations.add("I1", ("trail", event_id), f"event {event_id}: proxy {proxy} granted to "
                                        f"{worker_id} while grant {current[proxy]} is on")
                if token is None or token <= highest.get(proxy, -1):
                    self.violations.add("I1", ("trail", event_id), f"event {event_id}: proxy {proxy} token {token} "
                                        f"not above {highest.get(proxy)}")
                if blocked.get(proxy):
                    self.violations.add("I2", ("trail", event_id), f"event {event_id}: proxy {proxy} granted "
                                        f"to {worker_id} while blocked")
                    granted_while_blocked.add((proxy, token))
                current[proxy] = token
                highest[proxy] = max(highest.get(proxy, -1), token or -1)
                spans[(proxy, token)] = [worker_id, at, None]
                grants_of[proxy].append((token, at))
            elif event == "released":
                if current.get(proxy) != token:
                    self.violations.add("I1", ("trail", event_id), f"event {event_id}: proxy {proxy} released "
                                        f"token {token}, the current grant being {current.get(proxy)}")
                current[proxy] = None
                if (proxy, token) in spans:
                    spans[(proxy, token)][2] = at
                    spans[(proxy, token)].append(reason)
                if reason == "released_by_worker":  # I6 (c)
                    self.releases_checked_in_trail += 1
                    if leased_until is None or at > leased_until + EPSILON:
                        self.violations.add("I6", (proxy, token, "release"),
                                            f"event {event_id}: {worker_id} released proxy {proxy} token {token} "
                                            + ("with no lease end" if leased_until is None else
                                               f"{at - leased_until:.3f} s after its lease ended"))
            elif event == "blocked":
                if not blocked.get(proxy):
                    block_spans[proxy].append([at, None])
                blocked[proxy] = True
            elif event == "unblocked":
                if blocked.get(proxy) and block_spans[proxy]:
                    block_spans[proxy][-1][1] = at
                blocked[proxy] = False
        granted_events = [(at, worker_id, token) for _, at, _, event, _, worker_id, token, _ in events
                          if event == "granted"]
        with self.records.lock:
            grants = [g for w in self.records.workers.values() for g in w.grants]
        self.grants_checked = len(grants)
        for grant in grants:
            if grant.blocked_at is not None:
                self.check_block(grant, spans.get((grant.proxy_id, grant.token)), grants_of[grant.proxy_id])
            if grant.asked_at is not None:
                self.check_acquire(grant, block_spans[grant.proxy_id], granted_while_blocked)
        for grant in grants:
            span = spans.get((grant.proxy_id, grant.token))
            if span is None:
                self.violations.add("I1", (grant.proxy_id, grant.token), f"{grant.worker_id} got proxy "
                                    f"{grant.proxy_id} token {grant.token}, which the trail never granted")
                continue
            worker_id, granted_at, released_at, *release_reason = span
            if (release_reason == ["lease_expired"] and grant.renewed_at is not None
                    and released_at < grant.renewed_at + self.lease - EPSILON):
                self.violations.add("I1", (grant.proxy_id, grant.token, "early"),
                                    f"{grant.worker_id}: proxy {grant.proxy_id} token {grant.token} freed as "
                                    f"expired {grant.renewed_at + self.lease - released_at:.3f} s before the lease "
                                    f"it renewed last ran out")
            if worker_id != grant.worker_id:
                self.violations.add("I1", (grant.proxy_id, grant.token), f"{grant.worker_id} got proxy "
                                    f"{grant.proxy_id} token {grant.token}, granted to {worker_id} in the trail")
            if grant.proven_until is None:
                continue
            if granted_at > grant.acquired_at + EPSILON or (
                    released_at is not None and released_at < grant.proven_until - EPSILON):
                self.violations.add("I1", (grant.proxy_id, grant.token),
                                    f"{grant.worker_id}: proxy {grant.proxy_id} token {grant.token} proven "
                                    f"{grant.acquired_at:.3f}..{grant.proven_until:.3f}, granted in the trail "
                                    f"{granted_at:.3f}..{released_at}")
        return granted_events, current

    def check_block(self, grant: Grant, span: list | None, grants_of_proxy: list[tuple[int, float]]) -> None:
        """A block_proxy that returned true on the grant: a proof (I1 (a), (b)) if the trail says it released
        the grant, else judged by I1 (e)."""
        if span is None:
            return  # the trail never granted it: I1 (b) counts that
        if span[3:] == ["blocked_by_worker"]:
            self.block_proofs += 1
            with self.records.lock:
                grant.proven_until = max(grant.proven_until or grant.blocked_at, grant.blocked_at)
            self.check_proof(grant)
            return
        # v5: the grant had ended already (swept, requeued, its container restarted...) and nobody had been
        # granted the proxy since, or the block's transaction was rolled back (its worker killed before
        # COMMIT). Either way no proof, but a later grant of the proxy before the call was even sent means
        # that true was wrong.
        self.blocks_of_ended_grants += 1
        later = [(token, at) for token, at in grants_of_proxy
                 if token > grant.token and at < grant.blocked_at - EPSILON]
        if later:
            token, at = later[0]
            self.violations.add("I1", (grant.proxy_id, grant.token, "block"),
                                f"{grant.worker_id}: block_proxy({grant.proxy_id}, {grant.token}) sent at "
                                f"{grant.blocked_at:.3f} returned true, but the trail granted the proxy to token "
                                f"{token} at {at:.3f}, {grant.blocked_at - at:.3f} s before")

    def check_acquire(self, grant: Grant, block_spans: list[list], granted_while_blocked: set) -> None:
        """I2: an acquire_proxy reply on a proxy that the trail shows blocked from before the call was sent
        until after its reply arrived."""
        self.acquires_checked_against_blocks += 1
        if (grant.proxy_id, grant.token) in granted_while_blocked:
            return  # the trail's own granted event of it was counted
        for blocked_at, unblocked_at in block_spans:
            if blocked_at < grant.asked_at - EPSILON and (unblocked_at is None
                                                          or unblocked_at > grant.acquired_at + EPSILON):
                self.violations.add("I2", (grant.proxy_id, grant.token, "acquired_while_blocked", grant.asked_at),
                                    f"{grant.worker_id}: acquire_proxy sent at {grant.asked_at:.3f} returned proxy "
                                    f"{grant.proxy_id} token {grant.token} at {grant.acquired_at:.3f}, blocked in "
                                    f"the trail from {blocked_at:.3f} to {unblocked_at}")
                return
