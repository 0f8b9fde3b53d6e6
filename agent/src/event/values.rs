//! The typed values of event fields that the schema writes as names:
//! asset classes, file access, device kinds, address families and
//! protocols. Each converts to its schema name with `as_str` and back with
//! `FromStr`.

use serde::{Deserialize, Serialize};

/// The class of an asset, as written in `file.class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetClass {
    Dataset,
    Model,
    PickleModel,
    /// Files that make code run again later: cron, systemd units, shell
    /// start-up files, `authorized_keys`, `ld.so.preload`, sudoers, PAM,
    /// the account databases and git hooks.
    Persistence,
    GpuDevice,
    Secret,
    /// The running agent's own files: its executable, configuration,
    /// policies and state, and its process memory (`/proc/<pid>/mem`).
    /// Last, so it wins over every other class of the same path.
    Aiwatch,
}

impl AssetClass {
    pub const ALL: [AssetClass; 7] = [
        AssetClass::Dataset,
        AssetClass::Model,
        AssetClass::PickleModel,
        AssetClass::Persistence,
        AssetClass::GpuDevice,
        AssetClass::Secret,
        AssetClass::Aiwatch,
    ];

    /// The name used in events, rules and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetClass::Model => "model",
            AssetClass::PickleModel => "pickle-model",
            AssetClass::Dataset => "dataset",
            AssetClass::Secret => "secret",
            AssetClass::Persistence => "persistence",
            AssetClass::Aiwatch => "aiwatch",
            AssetClass::GpuDevice => "gpu-device",
        }
    }

    pub fn parse(name: &str) -> Option<AssetClass> {
        AssetClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// `model` or `pickle-model`.
    pub fn is_model(self) -> bool {
        matches!(self, AssetClass::Model | AssetClass::PickleModel)
    }

    /// Higher wins when several classes match one path (the declaration
    /// order of the enum).
    pub(crate) fn priority(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for AssetClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a file was opened, from its `O_ACCMODE` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read_write",
        }
    }

    /// The open may write to the file.
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }

    /// The open may read from the file.
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
}

/// A device node's type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Char,
    Block,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Char => "char",
            DeviceKind::Block => "block",
        }
    }
}

/// A socket's address family; unknown ones are written as `""`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetFamily {
    #[default]
    #[serde(rename = "")]
    Unknown,
    Ipv4,
    Ipv6,
    Unix,
}

impl NetFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            NetFamily::Unknown => "",
            NetFamily::Ipv4 => "ipv4",
            NetFamily::Ipv6 => "ipv6",
            NetFamily::Unix => "unix",
        }
    }
}

/// A socket's transport; unknown ones are left out of the JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    #[serde(rename = "")]
    Unknown,
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Unknown => "",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn is_unknown(&self) -> bool {
        *self == Protocol::Unknown
    }
}

/// Parsing the schema's names back, for hand-written events and tests.
macro_rules! from_schema_name {
    ($($ty:ident: [$($variant:ident),*];)*) => {$(
        impl std::str::FromStr for $ty {
            type Err = UnknownName;

            fn from_str(name: &str) -> Result<$ty, UnknownName> {
                [$($ty::$variant),*]
                    .into_iter()
                    .find(|v| v.as_str() == name)
                    .ok_or_else(|| UnknownName(name.to_string()))
            }
        }
    )*};
}

/// A name that is not one of the schema's values.
#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownName(pub String);

from_schema_name! {
    AssetClass: [Dataset, Model, PickleModel, GpuDevice, Secret];
    Access: [Read, Write, ReadWrite];
    DeviceKind: [Char, Block];
    NetFamily: [Unknown, Ipv4, Ipv6, Unix];
    Protocol: [Unknown, Tcp, Udp];
}
