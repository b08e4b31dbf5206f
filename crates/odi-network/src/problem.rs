//! Problems found in a network repository, each naming the file and, where known, the field.

use std::fmt;

/// One thing wrong with the repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Repository-relative path of the file at fault.
    pub file: String,
    /// The field, or `line N` for syntax errors, when known.
    pub field: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

impl Problem {
    /// A problem with a whole file.
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self { file: file.into(), field: None, message: one_line(message.into()) }
    }

    /// A problem with one field of a file.
    pub fn field(
        file: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self { file: file.into(), field: Some(field.into()), message: one_line(message.into()) }
    }
}

fn one_line(s: String) -> String {
    if s.contains('\n') {
        s.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.file, field, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in one pass; a repository with any of them is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// The first problem, for one-line summaries in status endpoints.
    pub fn first(&self) -> Option<&Problem> {
        self.0.first()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Turns a TOML error into a problem that names the line and the offending key.
pub fn from_toml(file: &str, text: &str, err: &toml::de::Error) -> Problem {
    let field = err.span().map(|span| {
        let line = text.get(..span.start).map_or(0, |s| s.matches('\n').count()) + 1;
        format!("line {line}")
    });
    Problem { file: file.to_owned(), field, message: one_line(err.message().to_owned()) }
}
