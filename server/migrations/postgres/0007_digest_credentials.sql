-- OMA-DM MD5 digest credentials (--management-auth digest): B64(MD5(name:secret)),
-- never the secret, and the one nonce (base64) the device may use next.
CREATE TABLE digest_credentials (
    device_id TEXT PRIMARY KEY,
    credential_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    nonce_expires_unix BIGINT NOT NULL
);
