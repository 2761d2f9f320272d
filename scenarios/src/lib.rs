//! winmdm: the conformance harness. Loads scenario files and runs them with emulated
//! Windows devices against the embedded reference server or any external one.

pub mod attacks;
pub mod bench;
pub mod capability;
pub mod checks;
pub mod dump;
pub mod embedded;
pub mod har;
pub mod html;
pub mod junit;
pub mod load;
pub mod replay;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod snapshot;
mod steps;
