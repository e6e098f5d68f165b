"""The figures a soak prints, and the JSON written next to them."""

from __future__ import annotations

import json
from pathlib import Path

from soak.config import SoakConfig


def summary(config: SoakConfig, records, checked: dict, elapsed: float, extra: dict) -> dict:
    counters = dict(records.counters)
    return {
        "config": {k: v for k, v in vars(config).items()},
        "elapsed_s": round(elapsed, 1),
        "acquisitions": counters.get("acquisitions", 0),
        "releases": counters.get("releases", 0),
        "blocks": counters.get("blocks", 0),
        "renewals": counters.get("renewals", 0),
        "fenced_out": {k.removeprefix("fenced_out_"): v for k, v in counters.items() if k.startswith("fenced_out_")},
        "scrapes": counters.get("scrapes", 0),
        "faults": dict(records.faults),
        "counters": counters,
        "crash_causes": dict(records.crash_causes),
        "crash_tracebacks": records.crash_tracebacks,
        "workers_started": len(records.workers),
        "async_exit_causes": dict(records.async_exit_causes),
        "errors": records.errors[:50],
        **extra,
        "checker": checked,
    }


def render(result: dict) -> str:
    c, checker = result["config"], result["checker"]
    lines = [
        f"soak: {c['containers']} containers x {c['workers_per_container']} workers, {c['proxies']} proxies, "
        f"{result['elapsed_s']:.0f} s; lease {c['lease']:g} s, heartbeat_timeout {c['heartbeat_timeout']:g} s and "
        f"{c['long_heartbeat_timeout']:g} s by turns of {c['toggle_every']:g} s, "
        f"maintenance by {c['sweep']} every {c['sweep_period']:g} s",
        f"acquisitions      {result['acquisitions']}",
        f"releases          {result['releases']} (release_proxy true), blocks {result['blocks']} (block_proxy true), "
        f"renewals {result['renewals']}",
        f"fenced out        {result['fenced_out'] or 0} (fenced calls that found the grant gone)",
        f"scrapes           {result['scrapes']}; workers started {result['workers_started']}",
        "faults injected   " + ", ".join(f"{k} {v}" for k, v in sorted(result["faults"].items())),
        "worker crashes    " + (", ".join(f"{v}x {k}" for k, v in sorted(result["crash_causes"].items())) or "none"),
        "maintenance       " + ", ".join(f"{k} {result['counters'].get(k, 0)}" for k in (
            ("maintenance_runs", "maintenance_longest_ms", "requeued_tasks", "swept_proxies", "cooled_down_unblocked")
            if c["sweep"] == "thread" else ()) + (
            "container_startup_freed", "quarantine_unblocked_by_operator", "heartbeat_timeout_switches")),
    ]
    lines.append("released, by reason (proxy_lease_events): "
                 + ", ".join(f"{k} {v}" for k, v in checker["released_by_reason"].items()))
    lines.append("unblocked, by reason (proxy_lease_events): "
                 + (", ".join(f"{k} {v}" for k, v in checker["unblocked_by_reason"].items()) or "none"))
    lines.append("worker log lines  " + (", ".join(f"{k.removeprefix('worker_log_')} {v}" for k, v in
                                                  sorted(result["counters"].items()) if k.startswith("worker_log_"))
                                          or "none"))
    if "pg_cron_runs" in result:
        lines.append(f"pg_cron runs      {result['pg_cron_runs']}")
    lines += [
        f"longest time a dead or paused worker's proxy stayed held: {checker['longest_silent_hold_s']:.1f} s "
        f"(bound {checker['bound_s']:.1f} s = lease {c['lease']:g} + sweep period {c['sweep_period']:g} "
        f"+ allowance {c['i3_allowance']:g}), over {checker['freed_silent_holds']} proxies freed from dead or paused "
        f"workers; {checker['resumed_holds']} kept by paused workers that resumed (longest pause while holding "
        f"{checker['longest_resumed_hold_s']:.1f} s); {checker['still_held_at_end']} still held at the end, within "
        f"the bound (longest {checker['longest_still_held_s']:.1f} s)",
        f"checker           {checker['samples']} samples; {checker['proofs_checked']} successful fenced calls "
        f"checked against the other grants of their proxy; {checker['grants_checked_against_trail']} grants "
        f"checked against proxy_lease_events",
        # I6: a renewal or release that succeeded on a lease that had ended; I2: acquire_proxy replies on a
        # proxy the trail shows blocked; block_proxy true is a proof only when the trail shows that it
        # released the grant (block_proxy v5 also blocks a free proxy whose grant had ended).
        f"lease ends (I6)   {checker['fenced_calls_checked_against_lease_end']} renewals and releases that succeeded "
        f"checked against their lease end, {checker['worker_releases_checked_in_trail']} worker releases in "
        f"proxy_lease_events; sent after their lease had ended: "
        f"{checker['sent_after_lease_end']['fenced_out']} fenced out, "
        f"{checker['sent_after_lease_end']['succeeded']} succeeded",
        *crash_lines(result),
        f"pool at the end   {checker['pool_at_end']['held_at_end']} proxies held by dead workers once the fleet "
        f"stopped, {checker['pool_at_end']['freed_at_end']} freed by release_container_proxies; then "
        f"{checker['pool_at_end']['free_at_end']} free, {checker['pool_at_end']['blocked_at_end']} blocked (I9)",
        f"blocks            block_proxy true: {checker['block_proofs']} released the grant (proofs, I1), "
        f"{checker['blocks_of_ended_grants']} on grants already ended (not proofs; checked for a later grant, I1); "
        f"{checker['acquires_checked_against_blocks']} acquire_proxy replies checked against the trail's blocks (I2)",
        "violations        " + ", ".join(f"{k} {v}" for k, v in checker["violations"].items()),
    ]
    for invariant, examples in checker["examples"].items():
        lines += [f"  {invariant}: {example}" for example in examples]
    if result["errors"]:
        lines.append(f"errors            {len(result['errors'])}")
        lines += [f"  {error}" for error in result["errors"][:10]]
    return "\n".join(lines)


def crash_lines(result: dict) -> list[str]:
    checker = result["checker"]
    crashes = checker["server_crashes"]
    if not crashes:
        return []
    lines = [
        f"server crashes    {len(crashes)} (pg_ctl stop -m immediate, restarted on the same data directory); "
        f"{checker['grants_checked_across_crashes']} grants received before a crash found intact after it (I7); "
        f"longest reconnect wait {checker['longest_reconnect_wait_s']:.1f} s (from the kill to the first call "
        f"that succeeded on the restarted server, of each worker live at the kill or of the one in its place); "
        f"{checker['samples_lost_to_server_crashes']} samples lost; {checker['holds_across_server_crashes']} dead "
        f"workers' proxies whose I3 bound a crash pushed back, longest held "
        f"{checker['longest_hold_across_server_crash_s']:.1f} s",
    ]
    if result["async_exit_causes"]:
        lines.append("async worker exits " + ", ".join(
            f"{v}x {k}" for k, v in sorted(result["async_exit_causes"].items())))
    for crash in crashes:
        seq_value, log_cnt = crash["sequence_before_kill"] or (None, None)
        lines.append(
            f"  crash {crash['number']}: down {crash['down_s']:.1f} s; {crash['grants_checked']} grants checked; "
            f"tokens: highest granted before {crash['tokens_before']}, sequence at the kill {seq_value} "
            f"(log_cnt {log_cnt}), after the restart {crash['sequence_after_restart']}, first granted after "
            f"{crash['first_token_after']}; {crash['workers_live_at_kill']} + {crash['async_workers_live_at_kill']} "
            f"async workers live at the kill, back within {crash['longest_reconnect_wait_s']:.1f} s"
            + (f", not back: {crash['not_back']}" if crash["not_back"] else ""))
    return lines


def write_json(result: dict, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    return path
