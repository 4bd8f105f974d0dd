-- The registry lists the subject versions that use a schema id (Confluent's
-- GET /schemas/ids/{id}/versions, Registry.VersionsByID). subject_versions is keyed by
-- (subject, version) and (subject, schema_id), so that lookup scanned the whole table; this
-- index answers it, and also serves the foreign key to pgjet.schemas. See "Access paths" in
-- docs/architecture.md; explain_test.go checks every query's plan.
CREATE INDEX IF NOT EXISTS subject_versions_schema_id ON pgjet.subject_versions (schema_id);
