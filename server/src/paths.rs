//! The routes' paths and the request body bound.

pub const ORBIT_ENROLL_PATH: &str = "/api/fleet/orbit/enroll";
pub const ORBIT_CONFIG_PATH: &str = "/api/fleet/orbit/config";
pub const DISCOVERY_PATH: &str = "/api/mdm/microsoft/discovery";
pub const POLICY_PATH: &str = "/api/mdm/microsoft/policy";
pub const ENROLL_PATH: &str = "/api/mdm/microsoft/enroll";
pub const MANAGEMENT_PATH: &str = "/api/mdm/microsoft/management";
pub const AUTH_PATH: &str = "/api/mdm/microsoft/auth";

/// Largest request body accepted on any route.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The discovery path Windows itself tries: "Access work or school" turns the user's
/// address `user@<domain>` into `https://enterpriseenrollment.<domain>` + this path
/// (MS-MDE2 §3.1.5; Microsoft's "Mobile device enrollment: Discovery" docs). Served
/// exactly like [`DISCOVERY_PATH`]; the URLs it discovers stay the same.
pub const WINDOWS_DISCOVERY_PATH: &str = "/EnrollmentServer/Discovery.svc";
