-- Hallmark's first schema for PostgreSQL, the same tables as the SQLite one (Schemas/sql/sqlite):
-- registration entries, join tokens, attested nodes, the CA key journal, the bundle's sequence
-- number, federated bundles, the hash-chained audit log, and the ordered change log that feeds
-- the agents' entry streams. Times are Unix seconds unless named *_ms.

CREATE TABLE entries (
    id              TEXT PRIMARY KEY,
    spiffe_id       TEXT NOT NULL,
    parent_id       TEXT NOT NULL,
    -- The selectors, sorted and joined: what makes two entries "the same" with spiffe_id and parent_id.
    selector_key    TEXT NOT NULL,
    x509_svid_ttl   BIGINT NOT NULL,
    jwt_svid_ttl    BIGINT NOT NULL,
    admin           BOOLEAN NOT NULL DEFAULT FALSE,
    downstream      BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at      BIGINT,
    hint            TEXT NOT NULL DEFAULT '',
    revision_number BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    UNIQUE (spiffe_id, parent_id, selector_key)
);
CREATE INDEX entries_by_parent ON entries (parent_id);
CREATE INDEX entries_by_spiffe_id ON entries (spiffe_id);
CREATE INDEX entries_by_expiry ON entries (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE entry_selectors (
    entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    type     TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (entry_id, type, value)
);
CREATE INDEX entry_selectors_by_selector ON entry_selectors (type, value);

CREATE TABLE entry_dns_names (
    entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name     TEXT NOT NULL,
    PRIMARY KEY (entry_id, position)
);

CREATE TABLE join_tokens (
    id         TEXT PRIMARY KEY,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash BYTEA NOT NULL UNIQUE,
    spiffe_id  TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);

CREATE TABLE attested_nodes (
    spiffe_id        TEXT PRIMARY KEY,
    attestation_type TEXT NOT NULL,
    serial_number    TEXT NOT NULL,
    expires_at       BIGINT NOT NULL,
    attested_at      BIGINT NOT NULL,
    banned           BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE node_selectors (
    spiffe_id TEXT NOT NULL REFERENCES attested_nodes (spiffe_id) ON DELETE CASCADE,
    type      TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (spiffe_id, type, value)
);

CREATE TABLE ca_journal (
    authority_id TEXT PRIMARY KEY,
    -- 'x509' or 'jwt'
    kind         TEXT NOT NULL CHECK (kind IN ('x509', 'jwt')),
    -- 'prepared', 'active', 'old', 'tainted', 'revoked'
    state        TEXT NOT NULL,
    not_before   BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    -- DER of the CA certificate (x509), or of the public key (jwt)
    material     BYTEA NOT NULL,
    key_file     TEXT NOT NULL,
    upstream     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL
);

CREATE TABLE bundle_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    sequence BIGINT NOT NULL
);
INSERT INTO bundle_state (id, sequence) VALUES (1, 0);

CREATE TABLE federated_bundles (
    trust_domain TEXT PRIMARY KEY,
    jwks         BYTEA NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Append-only. hash = SHA-256(previous_hash || the record's fields), so that altering, inserting
-- or deleting a record breaks the chain from that record on. The writer assigns sequence under a
-- lock on the table, so that several servers appending at once still make one chain.
CREATE TABLE audit_log (
    sequence      BIGINT PRIMARY KEY,
    time_ms       BIGINT NOT NULL,
    caller_uid    BIGINT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    result        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    previous_hash BYTEA NOT NULL,
    hash          BYTEA NOT NULL
);

-- What changed, in order: agents' streams resume from a sequence number.
CREATE TABLE change_log (
    sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind     TEXT NOT NULL,
    key      TEXT NOT NULL,
    time_ms  BIGINT NOT NULL
);
