//! DMClient CSP: `Provider/<ProviderID>/Unenroll` (Exec) removes the enrollment of that
//! provider once the session is over; only the provider this device is enrolled with can be
//! removed (DMClient CSP, Microsoft Learn "DMClient CSP", Unenroll). Every other node is as
//! the DDF declares it; provisioning writes the provider's nodes ([`crate::device`]).

use super::{code, Csp, NodeValue, Tree};

const PROVIDERS: &str = "./Vendor/MSFT/DMClient/Provider";

/// The DMClient CSP.
pub struct DmClient;

/// `Provider/<ID>/Unenroll` → `<ID>`.
fn unenroll_provider(path: &str) -> Option<&str> {
    path.strip_prefix(PROVIDERS)?
        .strip_prefix('/')?
        .strip_suffix("/Unenroll")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

impl Csp for DmClient {
    fn roots(&self) -> &'static [&'static str] {
        &["./Vendor/MSFT/DMClient"]
    }

    fn set(&self, cx: &mut Tree, path: &str, value: NodeValue, replace: bool) -> u16 {
        if unenroll_provider(path).is_some() {
            return code::NOT_ALLOWED;
        }
        super::generic::set(cx.store, cx.builtins, path, value, replace)
    }

    fn delete(&self, cx: &mut Tree, path: &str) -> u16 {
        if unenroll_provider(path).is_some() {
            return code::NOT_ALLOWED;
        }
        super::generic::delete(cx.store, cx.builtins, path)
    }

    fn exec(&self, cx: &mut Tree, path: &str) -> u16 {
        let Some(id) = unenroll_provider(path) else {
            return super::generic::exec(cx.store, cx.builtins, path);
        };
        let prefix = format!("{PROVIDERS}/{id}/");
        if !cx.store.nodes.keys().any(|k| k.starts_with(&prefix)) {
            return code::NOT_FOUND;
        }
        cx.effects.unenroll_provider = Some(id.to_string());
        code::OK
    }
}
