-- The audit log is append-only, and a key kept outside the database signs checkpoints of it.
--
-- A plain hash chain can be recomputed from any record by whoever can write the database, and
-- deleting the newest records leaves it intact. Each checkpoint signs (sequence, head hash, time)
-- with the server's checkpoint key (DATA_DIR/audit-checkpoint.key, never in the database); the
-- newest is also kept beside the key, so that `audit verify` sees a rewritten chain (a record's
-- hash no longer the one signed) and a truncation (the log ending before the newest checkpoint).
CREATE TABLE audit_checkpoints (
    sequence  INTEGER PRIMARY KEY,
    head_hash BLOB NOT NULL,
    time_ms   INTEGER NOT NULL,
    -- ECDSA P-256 over SHA-256 of the checkpoint's message (AuditCheckpoint.message), DER.
    signature BLOB NOT NULL,
    -- SHA-256 of the signing key's DER SubjectPublicKeyInfo, hex.
    key_id    TEXT NOT NULL
);

CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: records are never changed');
END;

CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: records are never deleted');
END;

CREATE TRIGGER audit_checkpoints_append_only_update BEFORE UPDATE ON audit_checkpoints BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_append_only_delete BEFORE DELETE ON audit_checkpoints BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
