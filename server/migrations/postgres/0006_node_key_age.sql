-- When each node key was issued (unix seconds), for --node-key-ttl-secs.
ALTER TABLE hosts ADD COLUMN node_key_issued_unix BIGINT NOT NULL DEFAULT 0;
