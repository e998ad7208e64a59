-- Which X.509 authority (its subject key identifier, hex) signed each node's current agent SVID,
-- so that a revoke that would cut nodes off is refused until they have renewed. Nodes stored
-- before this column are unknown ('') until their next renewal.
ALTER TABLE attested_nodes ADD COLUMN svid_authority TEXT NOT NULL DEFAULT '';
