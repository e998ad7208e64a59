-- Admitting a node looks up who else holds a selector that must be unique (a GPU's UEID: one GPU
-- backs one attested node), inside the admitting transaction; this index keeps that a lookup.
CREATE INDEX node_selectors_by_value ON node_selectors (type, value);
