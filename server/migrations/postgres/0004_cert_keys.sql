-- SHA-256 of each issued certificate's RSA public key, to refuse a CSR whose key
-- another device already holds.
ALTER TABLE device_certs ADD COLUMN public_key_sha256 TEXT NOT NULL DEFAULT '';
CREATE INDEX device_certs_key ON device_certs (public_key_sha256);

-- When a command was last sent (unix seconds): a command sent but never answered is
-- sent again once this is older than the redelivery delay.
ALTER TABLE commands ADD COLUMN sent_unix BIGINT;
