//! Event kinds, generated from the one list in `aiwatch_common::event_kinds!`.

use serde::{Deserialize, Serialize};

macro_rules! define_kind {
    ($first:ident = $first_number:literal, $first_name:literal; $($variant:ident = $number:literal, $name:literal;)*) => {
        /// Kinds as they appear in JSON (`"kind": "exec"`), generated from the
        /// one list in `aiwatch_common::event_kinds!`.
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        pub enum Kind {
            #[default]
            #[serde(rename = $first_name)]
            $first,
            $(#[serde(rename = $name)] $variant,)*
        }

        impl Kind {
            pub const ALL: [Kind; aiwatch_common::EventKind::ALL.len()] =
                [Kind::$first, $(Kind::$variant),*];

            /// The name used in JSON, metrics labels and rule conditions.
            pub fn as_str(self) -> &'static str {
                self.abi().name()
            }

            /// The kernel's number for this kind.
            pub fn abi(self) -> aiwatch_common::EventKind {
                match self {
                    Kind::$first => aiwatch_common::EventKind::$first,
                    $(Kind::$variant => aiwatch_common::EventKind::$variant,)*
                }
            }
        }

        impl From<aiwatch_common::EventKind> for Kind {
            fn from(kind: aiwatch_common::EventKind) -> Kind {
                match kind {
                    aiwatch_common::EventKind::$first => Kind::$first,
                    $(aiwatch_common::EventKind::$variant => Kind::$variant,)*
                }
            }
        }
    };
}

aiwatch_common::event_kinds!(define_kind);

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Dense index, for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;

    /// The table of kinds in `docs/events.md`, as the list makes it.
    fn docs_table() -> String {
        let mut table = String::from("| kind | number | family |\n| --- | --- | --- |\n");
        for kind in Kind::ALL {
            let number = kind.abi() as u16;
            let family = match number / 100 {
                1 => "process",
                2 => "file",
                3 => "network",
                4 => "privilege",
                5 => "accelerator",
                _ => "LLM traffic",
            };
            table += &format!("| `{kind}` | {number} | {family} |\n");
        }
        table
    }

    #[test]
    fn the_docs_list_every_kind_as_the_code_does() {
        let docs = include_str!("../../../docs/events.md");
        let block = docs
            .split_once("<!-- kinds:begin -->\n")
            .and_then(|(_, rest)| rest.split_once("<!-- kinds:end -->"))
            .map(|(block, _)| block)
            .expect("docs/events.md has the kinds block");
        assert_eq!(
            block,
            docs_table(),
            "regenerate the kinds table in docs/events.md"
        );
    }

    #[test]
    fn kinds_round_trip_through_json_and_the_abi() {
        for kind in Kind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), kind);
            assert_eq!(Kind::from(kind.abi()), kind);
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }
}
