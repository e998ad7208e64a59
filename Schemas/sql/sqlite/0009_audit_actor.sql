-- Who took each audited action: 'admin:UID', 'server', or 'agent:SPIFFE-ID'. NULL for records
-- written before actors were kept (only caller_uid, -1 for anything but an admin); a record with
-- an actor has it in its hash (AuditChain.preimage), so it cannot be removed or changed.
ALTER TABLE audit_log ADD COLUMN actor TEXT;
