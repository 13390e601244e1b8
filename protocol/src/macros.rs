//! Internal macros.

/// Declares a wire code enum: named variants for the values a spec defines,
/// plus `Unknown` for every other value so decoding is total and re-encoding
/// preserves the byte. `Unknown` is only produced for values that have no
/// named variant; `Default` is the variant for code 0.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value with no name in the specification.
            Unknown($repr),
        }

        impl $name {
            /// Decodes a wire value; never fails.
            pub const fn from_code(code: $repr) -> Self {
                match code {
                    $( $value => Self::$variant, )+
                    other => Self::Unknown(other),
                }
            }

            /// The wire value.
            pub const fn code(self) -> $repr {
                match self {
                    $( Self::$variant => $value, )+
                    Self::Unknown(other) => other,
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::from_code(0)
            }
        }

        impl From<$repr> for $name {
            fn from(code: $repr) -> Self {
                Self::from_code(code)
            }
        }
    };
}
