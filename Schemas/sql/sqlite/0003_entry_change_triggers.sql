-- Entry changes are logged by the database itself, in the same transaction as the change, so that
-- every writer leaves a record: the server, a bulk import, an operator's sqlite3. The server's
-- in-memory entry index catches up from these rows. An entry's DNS names and selectors are written
-- with its row (an update stores the row anew), so the entries table alone is watched.
CREATE TRIGGER entries_change_log_insert AFTER INSERT ON entries BEGIN
    INSERT INTO change_log (kind, key, time_ms)
    VALUES ('entry', NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER entries_change_log_update AFTER UPDATE ON entries BEGIN
    INSERT INTO change_log (kind, key, time_ms)
    SELECT 'entry', OLD.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE OLD.id != NEW.id;
    INSERT INTO change_log (kind, key, time_ms)
    VALUES ('entry', NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER entries_change_log_delete AFTER DELETE ON entries BEGIN
    INSERT INTO change_log (kind, key, time_ms)
    VALUES ('entry', OLD.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
