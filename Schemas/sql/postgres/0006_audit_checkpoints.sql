-- The audit log is append-only, and a key kept outside the database signs checkpoints of it.
--
-- A plain hash chain can be recomputed from any record by whoever can write the database, and
-- deleting the newest records leaves it intact. Each checkpoint signs (sequence, head hash, time)
-- with the server's checkpoint key (DATA_DIR/audit-checkpoint.key, never in the database); the
-- newest is also kept beside the key, so that `audit verify` sees a rewritten chain (a record's
-- hash no longer the one signed) and a truncation (the log ending before the newest checkpoint).
CREATE TABLE audit_checkpoints (
    sequence  BIGINT PRIMARY KEY,
    head_hash BYTEA NOT NULL,
    time_ms   BIGINT NOT NULL,
    -- ECDSA P-256 over SHA-256 of the checkpoint's message (AuditCheckpoint.message), DER.
    signature BYTEA NOT NULL,
    -- SHA-256 of the signing key's DER SubjectPublicKeyInfo, hex.
    key_id    TEXT NOT NULL
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'audit_log' THEN
        IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'audit_log is append-only: records are never changed';
        END IF;
        RAISE EXCEPTION 'audit_log is append-only: records are never deleted';
    END IF;
    RAISE EXCEPTION 'audit_checkpoints is append-only';
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
-- TRUNCATE skips row triggers: refused the same way.
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
