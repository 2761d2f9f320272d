//! DevInfo, DevDetail and DeviceStatus: the Get-only values of the OMA-DM standard objects
//! ([MS-MDM], OMA-DM 1.2 DevInfo/DevDetail) and Microsoft's DevDetail and DeviceStatus DDF
//! extensions, taken from the device profile. They are answered by the catalogue-driven
//! [`super::generic`] CSP (the DDF says which verbs a node has), in the DFFormat the
//! catalogue declares, which a test checks.

use super::BuiltIns;
use crate::profile::DeviceProfile;

/// The profile's values as (path, format, value).
impl DeviceProfile {
    /// The read-only DevInfo, DevDetail and DeviceStatus values this machine reports.
    pub fn builtins(&self, device_id: &str) -> BuiltIns {
        builtins(self, device_id)
    }
}

pub fn builtins(p: &DeviceProfile, device_id: &str) -> BuiltIns {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let v = |path: &str, f: &'static str, val: &str| (path.to_string(), f, val.to_string());
    vec![
        v("./DevInfo/DevId", "chr", device_id),
        v("./DevInfo/Man", "chr", &p.manufacturer),
        v("./DevInfo/Mod", "chr", &p.model),
        v("./DevInfo/DmV", "chr", "1.3"),
        v("./DevInfo/Lang", "chr", &p.locale),
        v("./DevDetail/DevTyp", "chr", &p.model),
        v("./DevDetail/OEM", "chr", &p.manufacturer),
        v("./DevDetail/FwV", "chr", &p.firmware_version),
        v("./DevDetail/SwV", "chr", &p.os_version),
        v("./DevDetail/HwV", "chr", &p.hardware_version),
        v("./DevDetail/LrgObj", "bool", "true"),
        v("./DevDetail/URI/MaxDepth", "chr", "32"),
        v("./DevDetail/URI/MaxTotLen", "chr", "2048"),
        v("./DevDetail/URI/MaxSegLen", "chr", "512"),
        v("./DevDetail/Ext/Microsoft/MobileID", "chr", "Not Present"),
        v("./DevDetail/Ext/Microsoft/RadioSwV", "chr", "Not Present"),
        v("./DevDetail/Ext/Microsoft/Resolution", "chr", "1920x1080"),
        v(
            "./DevDetail/Ext/Microsoft/CommercializationOperator",
            "chr",
            "Not Present",
        ),
        v(
            "./DevDetail/Ext/Microsoft/ProcessorArchitecture",
            "int",
            "9",
        ),
        v("./DevDetail/Ext/Microsoft/ProcessorType", "int", "8664"),
        v(
            "./DevDetail/Ext/Microsoft/OSPlatform",
            "chr",
            &p.os_platform(),
        ),
        v("./DevDetail/Ext/Microsoft/LocalTime", "chr", &now),
        v(
            "./DevDetail/Ext/Microsoft/DeviceName",
            "chr",
            &p.device_name,
        ),
        v(
            "./DevDetail/Ext/Microsoft/DNSComputerName",
            "chr",
            &p.hostname,
        ),
        v("./DevDetail/Ext/Microsoft/TotalStorage", "int", "511000"),
        v("./DevDetail/Ext/Microsoft/TotalRAM", "int", "16384"),
        v(
            "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber",
            "chr",
            &p.hardware_serial,
        ),
        v("./DevDetail/Ext/DeviceHardwareData", "chr", "Not Present"),
        v(
            "./DevDetail/Ext/WLANMACAddress",
            "chr",
            &p.mac.replace('-', ":"),
        ),
        v("./DevDetail/Ext/VoLTEServiceSetting", "bool", "false"),
        v("./DevDetail/Ext/WlanIPv4Address", "chr", "Not Present"),
        v("./DevDetail/Ext/WlanIPv6Address", "chr", "Not Present"),
        v("./DevDetail/Ext/WlanDnsSuffix", "chr", "Not Present"),
        v("./DevDetail/Ext/WlanSubnetMask", "chr", "Not Present"),
        // DeviceStatus CSP: a healthy machine (0 = running / up to date / on).
        v(
            "./Vendor/MSFT/DeviceStatus/Antivirus/SignatureStatus",
            "int",
            "0",
        ),
        v("./Vendor/MSFT/DeviceStatus/Antivirus/Status", "int", "0"),
        v("./Vendor/MSFT/DeviceStatus/Firewall/Status", "int", "0"),
        v(
            "./Vendor/MSFT/DeviceStatus/DeviceGuard/HypervisorEnforcedCodeIntegrityStatus",
            "int",
            "0",
        ),
        v(
            "./Vendor/MSFT/DeviceStatus/DeviceGuard/VirtualizationBasedSecurityStatus",
            "int",
            "0",
        ),
        v(
            "./Vendor/MSFT/DeviceStatus/DeviceGuard/LsaCfgCredGuardStatus",
            "int",
            "0",
        ),
        v(
            "./Vendor/MSFT/DeviceStatus/DeviceGuard/SystemGuardStatus",
            "int",
            "0",
        ),
        v(
            "./Vendor/MSFT/DeviceStatus/OS/Edition",
            "chr",
            &p.os_edition,
        ),
        v("./Vendor/MSFT/DeviceStatus/OS/Mode", "int", "0"),
        v(
            "./Vendor/MSFT/DeviceStatus/Compliance/EncryptionCompliance",
            "bool",
            "true",
        ),
    ]
}
