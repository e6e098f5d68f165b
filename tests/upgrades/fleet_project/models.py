"""The fleet's tables as its own code declares them: no proxy-leases column is here."""

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Text, func, text
from sqlalchemy.orm import declarative_base

Base = declarative_base(metadata=MetaData())


class Proxy(Base):
    __tablename__ = "proxies"
    id = Column(Integer, primary_key=True)
    host = Column(String(255), nullable=False)
    port = Column(Integer, nullable=False)
    is_in_use = Column(Boolean, server_default=text("false"))
    worker_id = Column(String(64))
    is_blocked = Column(Boolean, server_default=text("false"))
    updated_at = Column(DateTime(timezone=True), server_default=func.now())


class TaskColumns:
    """catalog_tasks and object_tasks have the same shape."""
    id = Column(Integer, primary_key=True)
    url = Column(Text, nullable=False)
    status = Column(String(20), nullable=False, server_default=text("'pending'"))
    worker_id = Column(String(64))
    heartbeat_at = Column(DateTime(timezone=True))
    created_at = Column(DateTime(timezone=True), server_default=func.now())


class CatalogTask(TaskColumns, Base):
    __tablename__ = "catalog_tasks"


class ObjectTask(TaskColumns, Base):
    __tablename__ = "object_tasks"
