"""The fleet's env.py: its own models, its own alembic_version; proxy-leases' objects left out."""

import os

from alembic import context
from sqlalchemy import create_engine, pool

from models import Base
from proxy_leases.autogenerate import include_object  # proxy-leases: 1 of 3

url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,  # proxy-leases: 2 of 3
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()
