-- Hosts known through the Orbit agent; node keys are stored as SHA-256 hashes.
CREATE TABLE hosts (
    host_uuid       TEXT PRIMARY KEY,
    hardware_uuid   TEXT NOT NULL UNIQUE,
    hardware_serial TEXT NOT NULL DEFAULT '',
    hostname        TEXT NOT NULL DEFAULT '',
    platform        TEXT NOT NULL DEFAULT '',
    node_key_hash   TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    last_seen_at    TEXT NOT NULL
);

-- One row per MDM enrollment (WSTEP certificate issued to a DeviceID).
CREATE TABLE enrollments (
    device_id        TEXT PRIMARY KEY,
    host_uuid        TEXT REFERENCES hosts(host_uuid),
    hardware_uuid    TEXT NOT NULL DEFAULT '',
    device_name      TEXT NOT NULL DEFAULT '',
    os_version       TEXT NOT NULL DEFAULT '',
    enrollment_type  TEXT NOT NULL DEFAULT '',
    upn              TEXT NOT NULL DEFAULT '',
    cert_serial      TEXT NOT NULL UNIQUE,
    cert_thumbprint  TEXT NOT NULL,
    cert_not_after   TEXT NOT NULL,
    state            TEXT NOT NULL,
    enrolled_at      TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_checkin_at  TEXT
);

-- One row per (command, device): a command queued for many devices shares its UUID,
-- which is also the CmdID it is delivered under. Delivered in id order.
CREATE TABLE commands (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_uuid  TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    verb          TEXT NOT NULL,
    target        TEXT NOT NULL DEFAULT '',
    body_xml      TEXT NOT NULL,
    state         TEXT NOT NULL,
    status_code   TEXT,
    created_at    TEXT NOT NULL,
    sent_at       TEXT,
    acked_at      TEXT
);
CREATE UNIQUE INDEX commands_command_device ON commands (command_uuid, device_id);
CREATE INDEX commands_device_state ON commands (device_id, state, id);

-- Status and Results the device returned for a command.
CREATE TABLE command_results (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_uuid  TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    msg_ref       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    status_code   TEXT,
    body_xml      TEXT NOT NULL,
    received_at   TEXT NOT NULL
);
CREATE INDEX command_results_command ON command_results (command_uuid, device_id, id);
