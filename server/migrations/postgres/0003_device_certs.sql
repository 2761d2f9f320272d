-- Every certificate issued to a device. A renewal leaves the previous certificate
-- 'retiring' until the device uses the new one or retire_after (unix seconds) passes.
CREATE TABLE device_certs (
    cert_serial   TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL,
    thumbprint    TEXT NOT NULL,
    not_after     TEXT NOT NULL,
    state         TEXT NOT NULL,
    retire_after  BIGINT,
    issued_at     TEXT NOT NULL
);
CREATE INDEX device_certs_device ON device_certs (device_id, state);
INSERT INTO device_certs (cert_serial, device_id, thumbprint, not_after, state, retire_after, issued_at)
    SELECT cert_serial, device_id, cert_thumbprint, cert_not_after, 'active', NULL, enrolled_at FROM enrollments;
