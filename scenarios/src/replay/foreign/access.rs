//! How the replay reaches and authenticates to the target: its discovery URL, its
//! DiscoverResult, and the credential it accepts.

use fake_windows_client::auth::Credential;
use fake_windows_client::{soap, DiscoverResult};

use super::{Foreign, STANDARD_DISCOVERY_PATH};

/// What the target accepts in `wsse:Security`.
pub(super) enum Cred {
    Token(String),
    User(String, String),
}

impl Cred {
    pub(super) fn header(&self) -> String {
        soap::security_header(&match self {
            Cred::Token(t) => Credential::Token(t),
            Cred::User(username, password) => Credential::UsernamePassword { username, password },
        })
    }
}

impl Foreign<'_> {
    pub(super) fn helper(&mut self) -> Result<&mut fake_windows_client::Device, String> {
        if self.helper.is_none() {
            let d = fake_windows_client::Device::new(
                fake_windows_client::DeviceProfile::random(),
                self.tls.clone(),
            )
            .map_err(|e| e.to_string())?;
            self.helper = Some(d);
        }
        self.helper
            .as_mut()
            .ok_or_else(|| "no emulated device".to_string())
    }

    /// Orbit is how the replay authenticates when no token or user was given.
    pub(super) fn uses_orbit(&self) -> bool {
        self.target.token.is_none()
            && self.target.credentials.is_none()
            && !self.target.enroll_secret.is_empty()
    }

    /// A node key from the target's Orbit enroll (and the discovery URL its config
    /// announces), obtained once.
    pub(super) async fn orbit_key(&mut self) -> Result<String, String> {
        if let Some(k) = &self.node_key {
            return Ok(k.clone());
        }
        let (url, secret) = (
            self.target.server_url.clone(),
            self.target.enroll_secret.clone(),
        );
        let d = self.helper()?;
        let key = d
            .orbit_enroll(&url, &secret)
            .await
            .map_err(|e| format!("getting an Orbit node key from the target: {e}"))?;
        let announced = d
            .orbit_config()
            .await
            .ok()
            .and_then(|n| n.windows_mdm_discovery_endpoint);
        if self.announced_discovery.is_none() {
            self.announced_discovery = announced;
        }
        self.node_key = Some(key.clone());
        Ok(key)
    }

    pub(super) async fn discovery_url(&mut self) -> Result<String, String> {
        if let Some(u) = &self.target.discovery_url {
            return Ok(u.clone());
        }
        if self.announced_discovery.is_none() && self.uses_orbit() {
            self.orbit_key().await?;
        }
        Ok(match &self.announced_discovery {
            Some(u) => u.clone(),
            None => format!("{}{STANDARD_DISCOVERY_PATH}", self.target.server_url),
        })
    }

    /// The target's DiscoverResult: from the replayed Discover, or (for a capture that
    /// starts later) from a Discover of the emulated device.
    pub(super) async fn discovered(&mut self) -> Result<DiscoverResult, String> {
        if let Some(d) = &self.discovered {
            return Ok(d.clone());
        }
        if self.discover_tried {
            return Err(
                "needs the target's DiscoverResponse, which it did not give above: not sent".into(),
            );
        }
        self.discover_tried = true;
        let url = self.discovery_url().await?;
        let upn = self.upn.clone();
        let d = self
            .helper()?
            .discover(&url, &upn)
            .await
            .map_err(|e| format!("the capture has no Discover and the target's failed: {e}"))?;
        self.discovered = Some(d.clone());
        Ok(d)
    }

    pub(super) async fn credential(&mut self) -> Result<Cred, String> {
        if let Some(t) = &self.target.token {
            return Ok(Cred::Token(t.clone()));
        }
        if let Some((user, password)) = self.target.credentials.clone() {
            let discovered = self.discovered().await?;
            if discovered.auth_policy != "Federated" {
                return Ok(Cred::User(user, password));
            }
            if let Some(t) = &self.federated_token {
                return Ok(Cred::Token(t.clone()));
            }
            let upn = self.upn.clone();
            let d = self.helper()?;
            d.set_enrollment_auth(vec!["Federated".into()], Some((user, password)));
            let t = d
                .federated_token(&discovered, &upn)
                .await
                .map_err(|e| format!("logging in at the target's federated page: {e}"))?;
            self.federated_token = Some(t.clone());
            return Ok(Cred::Token(t));
        }
        if !self.target.enroll_secret.is_empty() {
            return self.orbit_key().await.map(Cred::Token);
        }
        Err("no credential the target accepts: give --token, --username/--password or --enroll-secret".into())
    }
}
