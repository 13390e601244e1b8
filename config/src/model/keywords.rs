//! The configuration's keyword enums (`io_engine = "uring"`, `backend =
//! "file"`, …): each parses from and prints as its lower-case keyword.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Error for an unrecognised enum keyword.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{value}`, expected one of {}", quoted(.expected))]
pub struct UnknownKeyword {
    /// What was given.
    pub value: String,
    /// The accepted keywords.
    pub expected: &'static [&'static str],
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Defines a keyword enum with `NAMES`, `as_str`, `FromStr`, `Display` and
/// lower-case serde serialization.
macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $kw:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $kw)] $variant),+
        }

        impl $name {
            /// Every accepted keyword, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($kw),+];

            /// The config-file keyword for this value.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $kw),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownKeyword;
            fn from_str(s: &str) -> Result<Self, UnknownKeyword> {
                match s {
                    $($kw => Ok(Self::$variant),)+
                    _ => Err(UnknownKeyword { value: s.to_owned(), expected: Self::NAMES }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum! {
    /// `server.io_engine`.
    IoEngine {
        /// io_uring when the kernel supports it, else epoll.
        #[default] Auto = "auto",
        /// Require io_uring.
        Uring = "uring",
        /// Readiness-based epoll.
        Epoll = "epoll",
    }
}

keyword_enum! {
    /// `server.zerocopy`.
    ZeroCopyMode {
        /// Zero-copy for payloads of at least `zerocopy_threshold` bytes.
        #[default] Auto = "auto",
        /// Always zero-copy.
        Always = "always",
        /// Always copy.
        Never = "never",
    }
}

keyword_enum! {
    /// `server.status_policy`.
    StatusPolicy {
        /// Report status only after the data is durable/transferred.
        #[default] Strict = "strict",
        /// Allow status to be sent as early as the protocol permits.
        Eager = "eager",
    }
}

keyword_enum! {
    /// `volumes[].backend`.
    BackendKind {
        /// Regular file or block device at `path`.
        #[default] File = "file",
        /// Discards writes, reads zeroes; needs `size`.
        Null = "null",
        /// A RAM disk of `size` bytes, committed when it opens; its data
        /// is lost when the daemon stops.
        Memory = "memory",
        /// A Ceph RBD image (`pool`, `image`; `size` creates it when missing).
        Rbd = "rbd",
    }
}

keyword_enum! {
    /// `cluster.non_owner_state`: the access state a gateway reports for
    /// a volume another gateway owns.
    NonOwnerState {
        /// NVMe ANA Non-Optimized, ALUA Active/Non-optimized: I/O allowed.
        #[default] NonOptimized = "non_optimized",
        /// NVMe ANA Inaccessible, ALUA Standby: I/O refused.
        Inaccessible = "inaccessible",
        /// NVMe ANA Inaccessible, ALUA Unavailable: I/O refused.
        Unavailable = "unavailable",
    }
}
