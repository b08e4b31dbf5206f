//! Catalog and release files parsed in pieces.
//!
//! Why: `toml` builds the whole document's tree before deserializing it, about a kilobyte
//! per `[[artifacts]]` table; a catalog of 100,000 artifacts cost a relay a transient quarter
//! gigabyte on its first sync (measured with heaptrack). Parsed a few thousand tables at a
//! time, the tree never holds more than one piece per thread.
//!
//! What must stay true: the result is exactly the whole parse's, or `None` and the caller
//! parses whole (which also gives its error, with line numbers). The file is cut only before
//! lines that are exactly `[[artifacts]]`. Every piece must parse alone, and a piece after
//! the head may hold artifact tables and nothing else, so a cut inside a multi-line string
//! leaves the string unterminated in the piece before (an error, so `None`), a table such as
//! `[import]` after the artifacts is refused by the piece (so `None`), and a head that says
//! anything of `artifacts` itself (which the whole parse might refuse with the array of
//! tables after it) gives `None`.

use rayon::prelude::*;
use serde::Deserialize;

use crate::raw::{ArtifactEntry, CatalogFile, ReleaseFile};

/// Artifact tables per piece.
pub const PIECE: usize = 2048;

/// A document with an `artifacts` array of tables.
pub trait Listing: serde::de::DeserializeOwned + Send {
    /// Where the artifacts go.
    fn artifacts_mut(&mut self) -> &mut Vec<ArtifactEntry>;
}

impl Listing for CatalogFile {
    fn artifacts_mut(&mut self) -> &mut Vec<ArtifactEntry> {
        &mut self.artifacts
    }
}

impl Listing for ReleaseFile {
    fn artifacts_mut(&mut self) -> &mut Vec<ArtifactEntry> {
        &mut self.artifacts
    }
}

/// What a piece after the head may hold.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Piece {
    artifacts: Vec<ArtifactEntry>,
}

/// `text` parsed `per_piece` artifact tables at a time, or `None` when that cannot be shown to
/// equal the whole parse (or the file has no more than one piece: then the whole parse is as
/// lean).
pub fn parse_in_pieces<T: Listing>(text: &str, per_piece: usize) -> Option<T> {
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == "[[artifacts]]" {
            starts.push(offset);
        }
        offset += line.len();
    }
    if per_piece == 0 || starts.len() <= per_piece {
        return None;
    }
    let head: toml::Table = toml::from_str(&text[..starts[0]]).ok()?;
    if head.contains_key("artifacts") {
        return None;
    }
    let mut doc: T = toml::Value::Table(head).try_into().ok()?;
    let bounds: Vec<usize> =
        starts.iter().step_by(per_piece).copied().chain([text.len()]).collect();
    let pieces: Vec<Vec<ArtifactEntry>> = bounds
        .par_windows(2)
        .map(|w| toml::from_str::<Piece>(&text[w[0]..w[1]]).ok().map(|p| p.artifacts))
        .collect::<Option<_>>()?;
    let all = doc.artifacts_mut();
    all.reserve(pieces.iter().map(Vec::len).sum());
    for piece in pieces {
        all.extend(piece);
    }
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "serial = 3\ncatalog = \"c\"\n";

    fn entry(i: usize) -> String {
        format!(
            "[[artifacts]]\npath = \"pool/a{i}.tar.gz\"\nsize = {}\nsha256 = \"{}\"\n\n",
            100 + i,
            "ab".repeat(32)
        )
    }

    fn release(n: usize) -> String {
        HEAD.to_owned() + &(0..n).map(entry).collect::<String>()
    }

    /// Each case: the text, and whether the pieces must be taken when every `[[artifacts]]`
    /// line is a cut (else the whole parse is).
    fn cases() -> Vec<(&'static str, String, bool)> {
        let ten = release(10);
        vec![
            ("plain", ten.clone(), true),
            ("CRLF line ends", ten.replace('\n', "\r\n"), true),
            ("no final newline", ten.trim_end().to_owned(), true),
            (
                "comments and spaced headers stay inside a piece",
                ten.replace(
                    "[[artifacts]]\npath = \"pool/a5",
                    "[[ artifacts ]] # c\npath = \"pool/a5",
                )
                .replace("[[artifacts]]\npath = \"pool/a6", "[[artifacts]]  \npath = \"pool/a6"),
                true,
            ),
            (
                "a spaced first header keeps the artifacts in the head",
                ten.replacen("[[artifacts]]", "[[ artifacts ]]", 1),
                false,
            ),
            ("one table: one piece", release(1), false),
            ("no artifacts", HEAD.to_owned(), false),
            (
                "a multi-line string holding a header line",
                ten.replacen(
                    "size = 104",
                    "size = 104\nexpunged = \"\"\"\n[[artifacts]]\npath = \"x\"\n\"\"\"",
                    1,
                ),
                false,
            ),
            (
                "a literal multi-line string holding a header line",
                ten.replacen("size = 104", "size = 104\nexpunged = '''\n[[artifacts]]\n'''", 1),
                false,
            ),
            (
                "a table after the artifacts",
                ten.clone() + "[import]\nformat = \"apt\"\nfrom = \"x\"\n",
                false,
            ),
            (
                "an empty static array in the head",
                format!("{HEAD}artifacts = []\n{}", &ten[HEAD.len()..]),
                false,
            ),
            (
                "a dotted artifacts key in the head",
                format!("{HEAD}artifacts.x = 1\n{}", &ten[HEAD.len()..]),
                false,
            ),
            (
                "an unknown key in an artifact",
                ten.replacen("size = 105", "size = 105\ncolour = 1", 1),
                false,
            ),
            (
                "a duplicate key in an artifact",
                ten.replacen("size = 106", "size = 106\nsize = 7", 1),
                false,
            ),
            ("a head that does not parse", ten.replacen("serial = 3", "serial = ", 1), false),
            ("a head missing a field", ten.replacen("catalog = \"c\"\n", "", 1), false),
            (
                "an unknown key in the head",
                ten.replacen("serial = 3", "serial = 3\nextra = 1", 1),
                false,
            ),
        ]
    }

    #[test]
    fn pieces_give_the_whole_parse_or_decline() {
        for (name, text, taken) in cases() {
            let whole = toml::from_str::<ReleaseFile>(&text).map_err(|e| e.to_string());
            // Larger pieces may miss the cut that makes a case decline; whatever they take
            // must still be the whole parse.
            for per_piece in 1..=4 {
                let pieces = parse_in_pieces::<ReleaseFile>(&text, per_piece);
                if per_piece == 1 {
                    assert_eq!(pieces.is_some(), taken, "{name}: {whole:?}");
                }
                if let Some(p) = pieces {
                    assert_eq!(Ok(p), whole, "{name}, {per_piece} per piece");
                }
            }
        }
    }

    #[test]
    fn a_catalog_keeps_its_head_and_every_artifact_in_order() {
        let text = format!(
            "serial = 1\nname = \"c\"\ndescription = \"d\"\norigins = [\"https://o.example/\"]\n\
             [import]\nformat = \"apt\"\nfrom = \"https://o.example/\"\ndists = [\"x\"]\n\n{}",
            (0..25).map(entry).collect::<String>()
        );
        let whole = toml::from_str::<CatalogFile>(&text);
        let pieces = parse_in_pieces::<CatalogFile>(&text, 4);
        if let Err(e) = &whole {
            panic!("the fixture must parse whole: {e}");
        }
        assert_eq!(pieces.as_ref(), whole.as_ref().ok());
        assert_eq!(pieces.unwrap().artifacts.len(), 25);
    }
}
