//! Emulated registry and certificate stores.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A typed registry value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegValue {
    /// REG_SZ
    Sz(String),
    /// REG_DWORD
    Dword(u32),
}

impl RegValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RegValue::Sz(s) => Some(s),
            RegValue::Dword(_) => None,
        }
    }
    pub fn as_dword(&self) -> Option<u32> {
        match self {
            RegValue::Dword(d) => Some(*d),
            RegValue::Sz(_) => None,
        }
    }
}

impl std::fmt::Display for RegValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegValue::Sz(s) => write!(f, "REG_SZ {s}"),
            RegValue::Dword(d) => write!(f, "REG_DWORD 0x{d:x}"),
        }
    }
}

/// Key path (e.g. `HKLM\SOFTWARE\Microsoft\Enrollments\<GUID>`) → value name → value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub keys: BTreeMap<String, BTreeMap<String, RegValue>>,
}

impl Registry {
    pub fn set(&mut self, key: &str, name: &str, value: RegValue) {
        self.keys
            .entry(key.to_string())
            .or_default()
            .insert(name.to_string(), value);
    }
    pub fn set_sz(&mut self, key: &str, name: &str, value: impl Into<String>) {
        self.set(key, name, RegValue::Sz(value.into()));
    }
    pub fn set_dword(&mut self, key: &str, name: &str, value: u32) {
        self.set(key, name, RegValue::Dword(value));
    }
    pub fn get(&self, key: &str, name: &str) -> Option<&RegValue> {
        self.keys.get(key).and_then(|k| k.get(name))
    }
    pub fn key(&self, key: &str) -> Option<&BTreeMap<String, RegValue>> {
        self.keys.get(key)
    }
    /// Keys directly under `parent`.
    pub fn subkeys(&self, parent: &str) -> Vec<&str> {
        let prefix = format!("{parent}\\");
        self.keys
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('\\'))
            .collect()
    }
}

pub(crate) mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// A certificate in an emulated store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCert {
    pub thumbprint: String,
    #[serde(with = "b64")]
    pub der: Vec<u8>,
    /// PKCS#8 PEM of the private key, for certificates the device holds a key for.
    pub private_key_pem: Option<String>,
    /// Key container name (CurKeyContainer).
    pub key_container: Option<String>,
}

/// Root\System and My\User / My\System.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertStores {
    pub root_system: Vec<StoredCert>,
    pub my_user: Vec<StoredCert>,
    pub my_system: Vec<StoredCert>,
}

impl CertStores {
    /// Store by its provisioning name (`Root/System`, `My/User`, `My/System`), case-insensitive.
    pub fn store(&self, name: &str) -> Option<&Vec<StoredCert>> {
        match name.replace('\\', "/").to_ascii_lowercase().as_str() {
            "root/system" => Some(&self.root_system),
            "my/user" => Some(&self.my_user),
            "my/system" => Some(&self.my_system),
            _ => None,
        }
    }
    pub fn store_mut(&mut self, name: &str) -> Option<&mut Vec<StoredCert>> {
        match name.replace('\\', "/").to_ascii_lowercase().as_str() {
            "root/system" => Some(&mut self.root_system),
            "my/user" => Some(&mut self.my_user),
            "my/system" => Some(&mut self.my_system),
            _ => None,
        }
    }
    /// Adds or replaces (by thumbprint) a certificate.
    pub fn put(&mut self, store: &str, cert: StoredCert) -> bool {
        match self.store_mut(store) {
            Some(s) => {
                s.retain(|c| c.thumbprint != cert.thumbprint);
                s.push(cert);
                true
            }
            None => false,
        }
    }
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &StoredCert)> {
        self.root_system
            .iter()
            .map(|c| ("Root\\System", c))
            .chain(self.my_user.iter().map(|c| ("My\\User", c)))
            .chain(self.my_system.iter().map(|c| ("My\\System", c)))
    }
}
