-- The X.509 authorities (subject key identifiers, hex, space-separated) that the workload SVIDs a
-- node's agent holds chain to, as the agent last reported them: a revoke of a key that workloads
-- still depend on is refused until their agent has renewed them. '' until the agent reports.
ALTER TABLE attested_nodes ADD COLUMN held_authorities TEXT NOT NULL DEFAULT '';
