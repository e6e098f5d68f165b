"""The independent checker: its own connection, sampling the proxies table and the workers' records.

Each invariant, precisely (a violation is counted once per distinct key given in brackets, however many
samples see it):

I1  No proxy is used by two workers at once. A worker's fenced calls are its only proof that it still
    holds a grant: an acquire_proxy reply (P, T) received at time a, then renew_proxy_lease,
    release_proxy or block_proxy on (P, T) that succeeded, the last one sent at time z. If the database
    is right, T was P's grant at every server time in [a, z] (a token, once gone, never comes back), so
    [a, z] is a time the worker provably held P. A worker that was paused past its lease still *believes*
    it holds P, and may even scrape through it, but its fenced calls fail, so its interval does not grow:
    that is allowed. Violations:
      (a) the proof intervals of two different grants of one proxy overlap  [proxy, token, token]
          (checked live, as the records change; two workers told the same grant count too);
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
I2  No blocked proxy is held: a sample showing is_blocked and is_in_use on one row  [proxy, token], and,
    at the end, a `granted` event in the trail while the proxy's last block event is not undone
    [event id]. (The soak never blocks a held proxy by hand, which an operator's UPDATE may do.)
I3  Every proxy of a dead worker is free within lease_duration + one sweep period (+ i3_allowance, see
    SoakConfig). A worker is silent from the moment it was killed or paused and nothing of its can
    reach the database any more (soak/gate.py). A sample that shows a proxy held by a worker silent
    for longer than the bound is a violation [worker, proxy, token, silent since]. The figure reported
    is, per (silent worker, grant held when it fell silent), the time from the silence to the first
    sample showing the grant gone while the worker was still silent, i.e. at most sample_every late;
    holds that ended because a paused worker resumed are counted apart.
I4  The number of proxies never changes: count(*) of proxies in a sample differs from the count at the
    start  [the count seen].
I5  No row breaks the consistency rule, checked here in the checker's own query, not by trusting the
    CHECK constraints (sql/0003_lease_columns.sql, 0006_lease_api_columns.sql) or the trigger
    tg_proxies__keep_lease_consistent (v3) that enforce it:
      lease        is_in_use is not NULL, and worker_id, leased_at and leased_until are set iff is_in_use;
      token        lease_token is set iff is_in_use;
      block        blocked_at, blocked_until, blocked_reason only while is_blocked; is_blocked not NULL;
      blocked_at   a blocked proxy has blocked_at (the trigger stamps it);
      renewal      a held proxy has leased_at <= renewed_at and leased_until > leased_at; a free one has
                   no renewed_at;
      strikes      strike_count >= 0, and below quarantine_after_strikes unless blocked (reaching it blocks);
      worker_id    a holder's id is <container_id>_<n> (README, "The contract");
      token_order  a proxy's token never goes down from one sample to the next (a later grant of a
                   proxy always carries a larger token)  [proxy, rule, token].
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg

from soak.records import DEAD, PAUSED, Grant, Records

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
SELECT id, extract(epoch FROM occurred_at)::float8, proxy_id, event, reason, worker_id, lease_token
  FROM proxy_lease_events WHERE id > %s ORDER BY proxy_id, id
"""

EPSILON = 0.005  # client and server read the same host clock; this covers rounding only


@dataclass
class Violations:
    keys: dict[str, set] = field(default_factory=lambda: {f"I{n}": set() for n in range(1, 6)})
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
        self.conn = psycopg.connect(url, autocommit=True, application_name="soak:checker")
        self.records, self.bound, self.lease = records, bound, lease
        self.violations = Violations()
        self.expected_count = self.conn.execute("SELECT count(*) FROM proxies").fetchone()[0]
        self.trail_start = self.conn.execute("SELECT coalesce(max(id), 0) FROM proxy_lease_events").fetchone()[0]
        self.samples = 0
        self.proofs = 0  # fenced calls that succeeded, each checked against the other grants of its proxy
        self.last_token: dict[int, int] = {}
        self.intervals: dict[int, list[Grant]] = defaultdict(list)  # proxy -> grants with a proof interval
        # (worker, proxy, token, silent since) -> [silent since, first sample without it, freed | resumed]:
        # I3's figures.
        self.silent_holds: dict[tuple[str, int, int], list[float | None]] = {}

    # -- I1 (a): live, from the records ----------------------------------------------------------

    def check_proofs(self) -> None:
        for grant in self.records.take_changed():
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

    # -- one sample ------------------------------------------------------------------------------

    def sample(self) -> None:
        self.check_proofs()
        workers = {worker_id: (status, silent) for worker_id, status, silent in self.records.snapshot()}
        rows = self.conn.execute(SAMPLE).fetchall()
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
                if now - silent_since > self.bound:
                    self.violations.add("I3", key, f"proxy {proxy} still held by {worker_id} "
                                        f"{now - silent_since:.1f} s after it went silent (bound {self.bound:.1f} s)")
        for key, hold in self.silent_holds.items():
            if hold[1] is None and key not in held_by_silent:
                hold[1] = now
                # Freed while its worker was still silent, or no longer counted because the worker resumed
                # (a paused worker whose lease was still on, or a later pause of it).
                status, silent_since = workers.get(key[0], (None, None))
                hold[2] = "freed" if status in (PAUSED, DEAD) and silent_since == key[3] else "resumed"

    # -- at the end ------------------------------------------------------------------------------

    def finish(self) -> dict:
        self.sample()
        self.check_trail()
        # Holds still open at the end are within the bound (else a sample counted them): censored.
        done = [hold[1] - hold[0] for hold in self.silent_holds.values() if hold[2] == "freed"]
        resumed = [hold[1] - hold[0] for hold in self.silent_holds.values() if hold[2] == "resumed"]
        still = [time.time() - hold[0] for hold in self.silent_holds.values() if hold[1] is None]
        released = dict(self.conn.execute(
            "SELECT reason, count(*) FROM proxy_lease_events WHERE id > %s AND event = 'released' GROUP BY 1 "
            "ORDER BY 2 DESC", (self.trail_start,)).fetchall())
        unblocked = dict(self.conn.execute(
            "SELECT reason, count(*) FROM proxy_lease_events WHERE id > %s AND event = 'unblocked' GROUP BY 1 "
            "ORDER BY 2 DESC", (self.trail_start,)).fetchall())
        self.conn.close()
        return {
            "unblocked_by_reason": unblocked,
            "released_by_reason": released,
            "samples": self.samples,
            "proofs_checked": self.proofs,
            "grants_checked_against_trail": self.grants_checked,
            "silent_holds": len(self.silent_holds),
            "freed_silent_holds": len(done),
            "longest_silent_hold_s": max(done, default=0.0),
            "resumed_holds": len(resumed),
            "longest_resumed_hold_s": max(resumed, default=0.0),
            "still_held_at_end": len(still),
            "longest_still_held_s": max(still, default=0.0),
            "bound_s": self.bound,
            "violations": self.violations.counts(),
            "examples": dict(self.violations.examples),
        }

    def check_trail(self) -> None:
        """I1 (b), (c) and I2 against proxy_lease_events, which the database writes in the same transaction
        as every grant, release, block and unblock."""
        events = self.conn.execute(TRAIL, (self.trail_start,)).fetchall()
        spans: dict[tuple[int, int], list] = {}  # (proxy, token) -> [worker, granted at, released at]
        current: dict[int, int | None] = {}
        blocked: dict[int, bool] = {}
        highest: dict[int, int] = {}
        for event_id, at, proxy, event, reason, worker_id, token in events:
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
                current[proxy] = token
                highest[proxy] = max(highest.get(proxy, -1), token or -1)
                spans[(proxy, token)] = [worker_id, at, None]
            elif event == "released":
                if current.get(proxy) != token:
                    self.violations.add("I1", ("trail", event_id), f"event {event_id}: proxy {proxy} released "
                                        f"token {token}, the current grant being {current.get(proxy)}")
                current[proxy] = None
                if (proxy, token) in spans:
                    spans[(proxy, token)][2] = at
                    spans[(proxy, token)].append(reason)
            elif event == "blocked":
                blocked[proxy] = True
            elif event == "unblocked":
                blocked[proxy] = False
        with self.records.lock:
            grants = [g for w in self.records.workers.values() for g in w.grants]
        self.grants_checked = len(grants)
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
