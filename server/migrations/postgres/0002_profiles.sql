-- Configuration profiles: named sets of Replace/Add commands.
CREATE TABLE profiles (
    name        TEXT PRIMARY KEY,
    items_json  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- A profile assigned to a device: pending -> verifying -> verified | failed.
CREATE TABLE profile_assignments (
    profile_name TEXT NOT NULL REFERENCES profiles(name),
    device_id    TEXT NOT NULL,
    state        TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '',
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (profile_name, device_id)
);

-- The commands an assignment queued: 'apply' (Replace/Add) then 'verify' (Get).
CREATE TABLE profile_commands (
    profile_name  TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    command_uuid  TEXT NOT NULL,
    phase         TEXT NOT NULL,
    item_index    BIGINT NOT NULL,
    PRIMARY KEY (command_uuid, device_id)
);
CREATE INDEX profile_commands_assignment ON profile_commands (profile_name, device_id, phase);
