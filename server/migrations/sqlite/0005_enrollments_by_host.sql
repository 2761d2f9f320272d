-- Orbit config and enrollment look enrollments up by host; without this index those
-- lookups scan the table, which dominated enrollment at tens of thousands of devices.
CREATE INDEX enrollments_host ON enrollments (host_uuid, updated_at);
