//! An emulated Windows 10/11 device for testing Windows MDM servers: the Orbit agent's
//! enrollment and config polling, mdmregistration.dll's MS-MDE2 enrollment (discovery,
//! MS-XCEP policy, MS-WSTEP certificate request), the registry and certificate stores
//! Windows writes, and OMA-DM (SyncML 1.2) management sessions over mutual TLS.
//!
//! Protocol messages are built and parsed by I/O-free modules (`discovery`, `xcep`,
//! `wstep`, `provisioning`, `syncml`, `session`, `cms`); [`Device`] adds HTTP and state.
//! The device's lifecycle after enrollment (certificate renewal, unenrollment, Orbit
//! notifications) runs against a controllable [`Clock`].

pub mod admx;
mod apply;
pub mod auth;
pub mod catalogue;
pub mod checkin;
pub mod clock;
pub mod cms;
pub mod credential;
pub mod csp;
pub mod csr;
pub mod ddf;
pub mod der;
pub mod device;
pub mod digest;
pub mod discovery;
mod enroll;
pub mod error;
pub mod foreign;
pub mod http;
pub mod inspect;
mod manage;
pub mod orbit;
pub mod poll;
pub mod profile;
pub mod provisioning;
pub mod registry;
mod renew;
pub mod session;
pub mod soap;
pub mod syncml;
pub mod throttle;
mod unenroll;
pub mod verify;
pub mod warning;
pub mod wstep;
pub mod xcep;
pub mod xml;

pub use checkin::{CheckinReport, CheckinState};
pub use clock::Clock;
pub use device::{
    Device, EnrollmentInfo, IdentityOverride, ManagementAuth, PreviousIdentity, RebootRecord,
};
pub use discovery::DiscoverResult;
pub use error::{ClientError, SoapFault};
pub use http::{Exchange, TlsOptions};
pub use manage::SyncReport;
pub use orbit::OrbitNotifications;
pub use profile::DeviceProfile;
pub use provisioning::ProvisioningDoc;
pub use registry::{CertStores, RegValue, Registry, StoredCert};
pub use session::ServerCommandRecord;
pub use unenroll::OrbitAction;
pub use warning::Warning;
pub use xcep::EnrollmentPolicy;

/// The HRESULT a failed renewal leaves in `RenewErrorCode`.
pub fn renew_hresult(e: &ClientError) -> u32 {
    renew::hresult_for(e)
}

/// A client certificate and key (PEM) from a self-signed CA the server does not know.
pub fn foreign_identity(device_id: &str) -> Result<(String, String), ClientError> {
    foreign::foreign_identity(device_id)
}
