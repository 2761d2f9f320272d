//! Reboot CSP: `RebootNow` is Exec (and Get with an empty value) and asks the device to
//! restart once the session is over; `Schedule/...` nodes are as the DDF declares them
//! (Reboot CSP, Microsoft Learn "Reboot CSP").

use super::{code, Csp, GetResult, NodeValue, Tree};

const ROOT: &str = "./Vendor/MSFT/Reboot";
const REBOOT_NOW: &str = "./Vendor/MSFT/Reboot/RebootNow";

/// The Reboot CSP.
pub struct Reboot;

impl Csp for Reboot {
    fn roots(&self) -> &'static [&'static str] {
        &[ROOT]
    }

    fn get(&self, cx: &Tree, path: &str) -> Result<GetResult, u16> {
        if path == REBOOT_NOW {
            // Reboot CSP DDF: RebootNow is Exec/Get with an empty value.
            return Ok(GetResult {
                format: "null".into(),
                mime: Some("text/plain".into()),
                data: String::new(),
            });
        }
        super::generic::get(cx.store, cx.builtins, path)
    }

    fn set(&self, cx: &mut Tree, path: &str, value: NodeValue, replace: bool) -> u16 {
        if path == REBOOT_NOW {
            return code::NOT_ALLOWED;
        }
        super::generic::set(cx.store, cx.builtins, path, value, replace)
    }

    fn delete(&self, cx: &mut Tree, path: &str) -> u16 {
        if path == REBOOT_NOW {
            return code::NOT_ALLOWED;
        }
        super::generic::delete(cx.store, cx.builtins, path)
    }

    /// RebootNow: accepted, and counted as a reboot for after the session.
    fn exec(&self, cx: &mut Tree, path: &str) -> u16 {
        if path == REBOOT_NOW {
            cx.effects.reboots += 1;
            return code::OK;
        }
        super::generic::exec(cx.store, cx.builtins, path)
    }
}
