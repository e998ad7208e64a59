-- What a node's attestation method needs to check the node again later (for TPM: the AK's
-- public area, against which re-attestation quotes are verified). Empty for join tokens.
ALTER TABLE attested_nodes ADD COLUMN attestation_data BLOB NOT NULL DEFAULT x'';
