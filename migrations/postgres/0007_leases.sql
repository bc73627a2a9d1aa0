-- Leases: which node runs a piece of scheduled work (sweeps, later the AI idle trigger and
-- campaigns). A node holds a lease until expires_at and renews it while it works; when it
-- stops renewing, another node takes the lease over.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
