//! Policy errors: every problem found while loading a policy is reported as
//! `file:line:column: sentence`, and loading collects as many as it can.

use std::fmt;

/// A position in a policy file (1-based line and column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub fn new(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }
}

/// One problem in one policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}:{}: {message}", pos.line, pos.column)]
pub struct PolicyError {
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

/// Everything wrong with a set of policy files, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn push(&mut self, file: &str, pos: Pos, message: impl Into<String>) {
        self.errors.push(PolicyError {
            file: file.to_string(),
            pos,
            message: message.into(),
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.errors.iter()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// An error at a position in the file being compiled; the file name is added
/// when it is collected into [`PolicyErrors`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedError {
    pub pos: Pos,
    pub message: String,
}

impl LocatedError {
    pub fn new(pos: Pos, message: impl Into<String>) -> LocatedError {
        LocatedError {
            pos,
            message: message.into(),
        }
    }
}

pub type Located<T> = Result<T, LocatedError>;
