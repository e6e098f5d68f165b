"""proxy-leases' Alembic environment and revisions (the SQL they run is in proxy_leases/sql)."""
