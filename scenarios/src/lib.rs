//! winmdm: the conformance harness. Loads scenario files and runs them with emulated
//! Windows devices against the embedded reference server or any external one.

pub mod capability;
pub mod checks;
pub mod cli_docs;
mod context;
pub mod dump;
pub mod embedded;
pub mod har;
pub mod html;
pub mod junit;
pub mod replay;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod server_args;
pub mod server_control;
pub mod snapshot;
mod steps;
/// An admin API error body as `code: message` (for the harness's and the load tools' messages).
pub use steps::admin_error_text;
pub mod target;
