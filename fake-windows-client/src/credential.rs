//! What the device authenticates with at enrollment: plain settings and credentials,
//! shared by the SOAP codec and the enrollment flow.

/// WS-Security UsernameToken password type.
pub const PASSWORD_TEXT: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";

/// What the device authenticates with in GetPolicies and RequestSecurityToken.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    Token(&'a str),
    UsernamePassword {
        username: &'a str,
        password: &'a str,
    },
}

/// The device's enrollment authentication settings.
#[derive(Debug, Clone, Default)]
pub struct EnrollmentAuth {
    /// Policies offered in Discover; empty means OnPremise and Federated, as Windows.
    pub policies: Vec<String>,
    /// User name and password, for OnPremise UsernameToken or the federated login form.
    pub username_password: Option<(String, String)>,
}

impl EnrollmentAuth {
    /// The AuthPolicies the Discover request offers.
    pub fn advertised(&self) -> Vec<&str> {
        if self.policies.is_empty() {
            vec!["OnPremise", "Federated"]
        } else {
            self.policies.iter().map(String::as_str).collect()
        }
    }

    /// The credential for a request: the user name and password when configured for
    /// OnPremise, else the token.
    pub fn credential<'a>(&'a self, token: &'a str) -> Credential<'a> {
        let on_premise_password = self.policies.iter().any(|p| p == "OnPremise")
            && !self.policies.iter().any(|p| p == "Federated");
        match &self.username_password {
            Some((username, password)) if on_premise_password => {
                Credential::UsernamePassword { username, password }
            }
            _ => Credential::Token(token),
        }
    }
}
