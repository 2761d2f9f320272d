-- What an OMA-DM session needs between its messages, shared by every replica.
-- The replay record: a session's last answered message (MsgID, SHA-256 of the request,
-- hex) and the answer sent (NULL while its effects are stored but the answer is not yet
-- known). One row per session; rows older than the session TTL are deleted.
CREATE TABLE session_replay (
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    response TEXT,
    updated_unix INTEGER NOT NULL,
    PRIMARY KEY (device_id, session_id)
);
CREATE INDEX session_replay_updated ON session_replay (updated_unix);
-- Large objects being reassembled from chunks (OMA-DM 1.2 MoreData): the chunks so far,
-- or a tombstone (refused = 1) refusing the later chunks of a refused or evicted object.
-- updated_us: microseconds, strictly increasing per write (the eviction order).
CREATE TABLE chunk_objects (
    device_id TEXT NOT NULL,
    cmd_ref TEXT NOT NULL,
    loc_uri TEXT NOT NULL,
    data TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    refused INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    PRIMARY KEY (device_id, cmd_ref, loc_uri)
);
