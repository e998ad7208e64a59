-- Entry changes are logged by the database itself, in the same transaction as the change, so that
-- every writer leaves a record: any server, a bulk import, an operator's psql. Each server's
-- in-memory entry index catches up from these rows. An entry's DNS names and selectors are written
-- with its row (an update stores the row anew), so the entries table alone is watched.
CREATE FUNCTION entries_change_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.id <> NEW.id THEN
        INSERT INTO change_log (kind, key, time_ms) VALUES ('entry', OLD.id, now_ms);
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (kind, key, time_ms) VALUES ('entry', OLD.id, now_ms);
        RETURN OLD;
    END IF;
    INSERT INTO change_log (kind, key, time_ms) VALUES ('entry', NEW.id, now_ms);
    RETURN NEW;
END;
$$;

CREATE TRIGGER entries_change_log AFTER INSERT OR UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION entries_change_log();
