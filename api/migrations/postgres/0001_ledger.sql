-- The reservations ledger (PostgreSQL). Times are epoch milliseconds; JSON as text
-- (the same columns as the SQLite ledger, read through sqlx's Any driver).

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    misfit_since_ms BIGINT
);

CREATE TABLE rankings (
    id BIGSERIAL PRIMARY KEY,
    application TEXT NOT NULL REFERENCES applications(id),
    at_ms BIGINT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX rankings_by_application ON rankings(application, id);

CREATE TABLE reservations (
    id BIGSERIAL PRIMARY KEY,
    application TEXT NOT NULL REFERENCES applications(id),
    scheme_rank BIGINT,
    supplies TEXT NOT NULL,
    feeders TEXT NOT NULL,
    reserved_kw DOUBLE PRECISION NOT NULL,
    reserved_kvar DOUBLE PRECISION NOT NULL,
    power_factor DOUBLE PRECISION NOT NULL,
    profile TEXT,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    released_ms BIGINT,
    release_reason TEXT
);
CREATE INDEX reservations_active ON reservations(released_ms, expires_ms);
CREATE INDEX reservations_by_application ON reservations(application, id);

CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    application TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_application ON audit(application, seq);

CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
