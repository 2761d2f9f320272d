//! Digest challenges (OMA-DM 1.2 Security, `syncml:auth-md5`; see [`crate::digest`]):
//! the nonce of each Status for our SyncHdr is kept for the next credentials, and a
//! 401/407 to a message without credentials is answered by sending package 1 again
//! with them, once.

use super::*;

impl ManagementSession {
    /// Package 1 again with credentials when the server challenged a message that had
    /// none; an error when it refused credentials; None otherwise.
    pub(super) fn answer_challenge(
        &mut self,
        msg: &ServerMessage,
        builtins: &BuiltIns,
    ) -> Result<Option<String>, ClientError> {
        let Some(hdr) = msg.synchdr_status() else {
            return Ok(None);
        };
        let challenged = matches!(hdr.code.as_deref(), Some("401") | Some("407"));
        let Some(digest) = self.digest.as_mut() else {
            return Ok(None);
        };
        if let Some(next) = hdr.next_nonce.as_deref() {
            // syncml.next_nonce (fail on a challenge, else warn): the nonce is base64
            // (OMA-DM 1.2 Security: NextNonce with Format b64); without a usable one the
            // device cannot answer a challenge, and its next session has no fresh nonce.
            if !digest.take_next_nonce(next) {
                if challenged {
                    return Err(ClientError::invalid(
                        STEP,
                        format!("challenge NextNonce {next:?} is not base64"),
                    ));
                }
                warn(
                    &mut self.warnings,
                    "syncml.next_nonce",
                    format!("NextNonce {next:?} is not base64: kept the previous nonce"),
                );
            }
        }
        if !challenged {
            return Ok(None);
        }
        // syncml.digest_refused (fail): a 401/407 to a message that carried credentials
        // means the server refused them; the device does not retry within the session.
        if self.last_had_cred {
            return Err(ClientError::invalid(
                STEP,
                format!(
                    "server refused our digest credentials (SyncHdr status {})",
                    hdr.code.as_deref().unwrap_or("")
                ),
            ));
        }
        // syncml.challenge_nonce (fail): a challenge names the nonce to hash with
        // (Chal/Meta/NextNonce); without one the device cannot answer.
        if hdr.next_nonce.is_none() {
            return Err(ClientError::invalid(
                STEP,
                "digest challenge without Chal/Meta/NextNonce",
            ));
        }
        let Some((login_status, unenroll)) = self.first.clone() else {
            return Ok(None);
        };
        self.send_cred = true;
        Ok(Some(self.package_one(builtins, &login_status, unenroll)))
    }
}
