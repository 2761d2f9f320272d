//! Wire formats, parsed and built without I/O: SOAP envelopes and faults ([`soap`]),
//! MS-MDE2 discovery ([`discovery`]), MS-XCEP ([`xcep`]), MS-WSTEP ([`wstep`]) with
//! PKCS#10 ([`csr`]), CMS ([`cms`]), DER ([`der`]) and the provisioning document
//! ([`provisioning`]), and OMA-DM SyncML ([`syncml`]).

pub mod cms;
pub mod csr;
pub mod der;
pub mod digest;
pub mod discovery;
pub mod provisioning;
pub mod soap;
pub mod syncml;
pub mod wstep;
pub mod xcep;
