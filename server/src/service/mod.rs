//! Services: the load-decide-store sequences the handlers call, over the store, the
//! identity CA and the protocol core. No HTTP here, and no SQL.

pub mod auth;
pub mod digest;
pub mod enrollment;
pub mod profiles;
