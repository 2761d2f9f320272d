//! What the steps of one scenario share while it runs.

use fake_windows_client::{DiscoverResult, EnrollmentPolicy};

use crate::capability::Capability;
use crate::target::Target;

/// A step skipped because the target lacks `capability`; `blocking` when the rest of
/// the scenario cannot run without it.
#[derive(Debug, Clone)]
pub(crate) struct Skip {
    pub(crate) capability: Capability,
    pub(crate) why: String,
    pub(crate) blocking: bool,
}

/// What the steps of one scenario share.
pub(crate) struct Context<'a> {
    pub(crate) target: &'a Target,
    pub(crate) device: fake_windows_client::Device,
    pub(crate) discovery_endpoint: Option<String>,
    pub(crate) upn: String,
    pub(crate) token: Option<String>,
    pub(crate) discover: Option<DiscoverResult>,
    pub(crate) policy: Option<EnrollmentPolicy>,
    pub(crate) last_command: Option<String>,
    /// Named commands: name → command id.
    pub(crate) commands: std::collections::HashMap<String, String>,
    /// Thumbprint of the client certificate presented in the current step.
    pub(crate) presented_cert: Option<String>,
    /// The management URL of the device's latest enrollment.
    pub(crate) management_url: Option<String>,
    /// Admin API exchanges of the current step.
    pub(crate) admin_exchanges: Vec<fake_windows_client::Exchange>,
    /// Set by a step that was skipped (read and cleared by the runner).
    pub(crate) skip: Option<Skip>,
    /// The capabilities for which a step of this scenario was skipped so far: later
    /// steps leave out what depended on them.
    pub(crate) skipped: std::collections::BTreeSet<Capability>,
    /// Every exchange of the scenario so far, with the name of its step.
    pub(crate) history: Vec<(&'static str, fake_windows_client::Exchange)>,
    pub(crate) http: reqwest::Client,
}
