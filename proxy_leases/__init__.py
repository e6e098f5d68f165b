"""proxy-leases: proxy leases kept true by PostgreSQL, installed with Alembic.

The SQL is the product (proxy_leases/sql, run by the revisions in proxy_leases/migrations); this
package installs it (the `proxy-leases` command, proxy_leases.cli) and lets a fleet's own Alembic
project live beside it (proxy_leases.autogenerate).
"""

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.22.0"
