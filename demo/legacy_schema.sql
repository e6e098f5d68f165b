-- The fleet's tables as they were before proxy-leases: what `alembic upgrade head` finds on a live
-- database. serial ids and varchar columns, as the contract allows, and columns of the fleet's own.

CREATE TABLE proxies (
    id         serial PRIMARY KEY,
    host       varchar(255) NOT NULL,
    port       integer NOT NULL,
    is_in_use  boolean DEFAULT false,
    worker_id  varchar(64),
    is_blocked boolean DEFAULT false,
    updated_at timestamptz DEFAULT now()
);

CREATE TABLE catalog_tasks (
    id           serial PRIMARY KEY,
    url          text NOT NULL,
    status       varchar(20) NOT NULL DEFAULT 'pending',
    worker_id    varchar(64),
    heartbeat_at timestamptz,
    created_at   timestamptz DEFAULT now()
);

CREATE TABLE object_tasks (
    id           serial PRIMARY KEY,
    url          text NOT NULL,
    status       varchar(20) NOT NULL DEFAULT 'pending',
    worker_id    varchar(64),
    heartbeat_at timestamptz,
    created_at   timestamptz DEFAULT now()
);
