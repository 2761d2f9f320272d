//! An emulated Windows 10/11 device for testing Windows MDM servers: the Orbit agent's
//! enrollment and config polling, mdmregistration.dll's MS-MDE2 enrollment (discovery,
//! MS-XCEP policy, MS-WSTEP certificate request), the registry and certificate stores
//! Windows writes, and OMA-DM (SyncML 1.2) management sessions over mutual TLS.
//!
//! Protocol messages are built and parsed by I/O-free modules (`discovery`, `xcep`,
//! `wstep`, `provisioning`, `syncml`, `session`); [`Device`] adds HTTP and state.

mod apply;
pub mod csp;
pub mod csr;
pub mod der;
pub mod device;
pub mod discovery;
mod enroll;
pub mod error;
pub mod foreign;
pub mod http;
mod manage;
pub mod orbit;
pub mod profile;
pub mod provisioning;
pub mod registry;
pub mod session;
pub mod soap;
pub mod syncml;
pub mod verify;
pub mod wstep;
pub mod xcep;

pub use device::{Device, EnrollmentInfo, IdentityOverride};
pub use discovery::DiscoverResult;
pub use error::{ClientError, SoapFault};
pub use http::{Exchange, TlsOptions};
pub use manage::SyncReport;
pub use orbit::OrbitNotifications;
pub use profile::DeviceProfile;
pub use provisioning::ProvisioningDoc;
pub use registry::{CertStores, RegValue, Registry, StoredCert};
pub use session::ServerCommandRecord;
pub use xcep::EnrollmentPolicy;

/// A client certificate and key (PEM) from a self-signed CA the server does not know.
pub fn foreign_identity(device_id: &str) -> Result<(String, String), ClientError> {
    foreign::foreign_identity(device_id)
}
