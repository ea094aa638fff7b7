-- The reservations ledger (SQLite). Times are epoch milliseconds; JSON as text.

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    request TEXT NOT NULL,          -- the application as submitted, validated
    status TEXT NOT NULL,           -- registered | reserved | released | expired
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    misfit_since_ms INTEGER         -- set while its reserved scheme no longer fits
);

CREATE TABLE rankings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application TEXT NOT NULL REFERENCES applications(id),
    at_ms INTEGER NOT NULL,
    result TEXT NOT NULL            -- the ranking returned
);
CREATE INDEX rankings_by_application ON rankings(application, id);

CREATE TABLE reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application TEXT NOT NULL REFERENCES applications(id),
    scheme_rank INTEGER,
    supplies TEXT NOT NULL,         -- JSON array of connection point ids
    feeders TEXT NOT NULL,          -- JSON array of their feeders
    reserved_kw REAL NOT NULL,      -- at each supply
    reserved_kvar REAL NOT NULL,
    power_factor REAL NOT NULL,
    profile TEXT,                   -- JSON array of 96 factors, or null (flat)
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    released_ms INTEGER,
    release_reason TEXT             -- released | expired | replaced
);
CREATE INDEX reservations_active ON reservations(released_ms, expires_ms);
CREATE INDEX reservations_by_application ON reservations(application, id);

CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    application TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL            -- JSON
);
CREATE INDEX audit_by_application ON audit(application, seq);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
