"""The run's options that more than one module reads, written once: how an option is read (-x, then
the environment, then the default), the lock timeout and its default, what counts as a duration, and
the SQLSTATEs of a lock that could not be had.

migrations/env.py (which Alembic runs, and nothing imports), pg_cron.py, fresh_install.py and the
command all read them from here. Reading an option needs Alembic's environment (an upgrade's, or the
one `proxy-leases sql` sets up).
"""

from __future__ import annotations

import os
import re

from alembic import context

# How long a step may wait for a lock on the fleet's tables (docs/install.md, "Options").
DEFAULT_LOCK_TIMEOUT = "5s"
# A duration both a setting (lock_timeout) and an interval accept.
DURATION = re.compile(r"[0-9]+(\.[0-9]+)? ?(ms|s|min|h|d)")
# lock_not_available (lock_timeout ran out) and deadlock_detected: a lock that could not be had.
LOCK_SQLSTATES = ("55P03", "40P01")


def option(name: str, env: str, default: str | None = None) -> str | None:
    """-x name=..., else the environment variable `env`, else `default`."""
    return context.get_x_argument(as_dictionary=True).get(name) or os.environ.get(env) or default


def duration_option(name: str, env: str, default: str) -> str:
    """A duration option both a setting (lock_timeout) and an interval accept, checked before anything runs."""
    return duration(name, option(name, env, default))


def lock_timeout() -> str:
    """How long a revision may wait for a lock on the fleet's tables before it gives up cleanly."""
    return duration_option("lock_timeout", "PROXY_LEASES_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)


def duration(name: str, value: str) -> str:
    """`value`, or a one-line stop naming the option, before anything runs."""
    if not (value == "0" or DURATION.fullmatch(value)):
        raise SystemExit(f"proxy-leases: {name}={value!r}: expected a number and a unit (ms, s, min, h, d), "
                         "e.g. 5s or 10min")
    return value
