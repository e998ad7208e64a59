-- When each node last presented evidence that passed (attestation or re-attestation, Unix
-- seconds). A node whose evidence is older than the server allows loses its identity. Nodes
-- stored before this column count from when they attested.
ALTER TABLE attested_nodes ADD COLUMN evidence_at BIGINT NOT NULL DEFAULT 0;
UPDATE attested_nodes SET evidence_at = attested_at;
