//! Load simulator and benchmark for Windows MDM servers, apart from the conformance
//! harness (`winmdm`) so that the harness does not carry their dependencies.
//!
//! [`load`] enrolls many emulated devices and keeps them checking in on a compressed
//! poll schedule; [`bench`] measures signing, enrollment and SyncML throughput of this
//! machine against embedded servers. Both reach servers through the harness's
//! [`winmdm::target::Target`].

pub mod bench;
pub mod chaos;
pub mod chart;
pub mod histogram;
pub mod keypool;
pub mod load;
pub mod stats;
pub mod timeline;
