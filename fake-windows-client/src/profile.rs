//! Who the emulated machine is: hardware identity, OS version and the values its standard
//! OMA-DM objects (DevInfo, DevDetail) report.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The machine's identity and software.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProfile {
    pub hardware_uuid: String,
    pub hardware_serial: String,
    pub hostname: String,
    /// NetBIOS-style computer name (DeviceName in the RST, DevDetail Ext/Microsoft/DeviceName).
    pub device_name: String,
    pub upn: String,
    /// Build, e.g. `10.0.22631.2428`.
    pub os_version: String,
    /// Edition number (`48` = Pro, `4` = Enterprise).
    pub os_edition: String,
    pub mac: String,
    pub locale: String,
    pub manufacturer: String,
    pub model: String,
    pub firmware_version: String,
    pub hardware_version: String,
    /// Local user SID written to the enrollment key.
    pub user_sid: String,
}

fn alnum(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

impl DeviceProfile {
    /// A plausible Windows 11 Pro machine with random identifiers.
    pub fn random() -> Self {
        let mut rng = rand::thread_rng();
        let host = format!("DESKTOP-{}", alnum(7));
        let mac: Vec<String> = (0..6)
            .map(|i| {
                let b: u8 = rng.gen();
                // Locally administered unicast for the first octet.
                format!("{:02X}", if i == 0 { (b & 0xfc) | 0x02 } else { b })
            })
            .collect();
        DeviceProfile {
            hardware_uuid: uuid::Uuid::new_v4().to_string().to_uppercase(),
            hardware_serial: alnum(10),
            hostname: host.clone(),
            device_name: host.clone(),
            upn: format!("{}@example.org", host.to_lowercase()),
            os_version: "10.0.22631.2428".into(),
            os_edition: "48".into(),
            mac: mac.join("-"),
            locale: "en-US".into(),
            manufacturer: "Contoso Computers".into(),
            model: format!("Surfboard {}", rng.gen_range(3..9)),
            firmware_version: format!("1.{}.0", rng.gen_range(1..40)),
            hardware_version: "Version 1.0".into(),
            user_sid: format!(
                "S-1-5-21-{}-{}-{}-1001",
                rng.gen::<u32>(),
                rng.gen::<u32>(),
                rng.gen::<u32>()
            ),
        }
    }

    /// This machine running another OS build, e.g. `10.0.19045.3570` (the catalogue's
    /// applicability compares its build and update revision, see [`crate::catalogue::Platform`]).
    pub fn with_os_version(mut self, version: &str) -> Self {
        self.os_version = version.to_string();
        self
    }

    /// This machine running another edition, by its decimal number (`48` = Pro,
    /// `4` = Enterprise, `121` = Education, `101` = Home).
    pub fn with_edition(mut self, edition: &str) -> Self {
        self.os_edition = edition.to_string();
        self
    }

    /// A Windows 10 22H2 Pro machine (build 19045).
    pub fn windows10_19045_pro() -> Self {
        Self::random()
            .with_os_version("10.0.19045.3570")
            .with_edition("48")
    }

    /// A Windows 11 24H2 Enterprise machine (build 26100).
    pub fn windows11_26100_enterprise() -> Self {
        Self::random()
            .with_os_version("10.0.26100.1742")
            .with_edition("4")
    }

    /// A Windows 11 23H2 Pro machine (build 22631): the [`DeviceProfile::random`] default.
    pub fn windows11_22631_pro() -> Self {
        Self::random()
            .with_os_version("10.0.22631.2428")
            .with_edition("48")
    }

    /// The names [`DeviceProfile::named`] knows, as scenario files write them.
    pub const NAMES: &'static [&'static str] = &[
        "windows10-19045-pro",
        "windows11-22631-pro",
        "windows11-26100-enterprise",
    ];

    /// A machine by profile name (one of [`DeviceProfile::NAMES`]).
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "windows10-19045-pro" => Some(Self::windows10_19045_pro()),
            "windows11-22631-pro" => Some(Self::windows11_22631_pro()),
            "windows11-26100-enterprise" => Some(Self::windows11_26100_enterprise()),
            _ => None,
        }
    }

    /// OS platform name reported in DevDetail (edition 4 = Enterprise, 48 = Pro; builds
    /// from 22000 on are Windows 11).
    pub fn os_platform(&self) -> String {
        let edition = match self.os_edition.as_str() {
            "4" => "Enterprise",
            "48" => "Pro",
            "101" => "Home",
            "121" => "Education",
            _ => "Pro",
        };
        let build = crate::catalogue::Platform::parse(&self.os_version, &self.os_edition)
            .map_or(22000, |p| p.build.0);
        let major = if build >= 22000 { 11 } else { 10 };
        format!("Windows {major} {edition}")
    }
}
