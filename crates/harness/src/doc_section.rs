//! Named sections of a generated Markdown document, so that several examples can each rewrite
//! their own table in one file (`docs/results.md`) without touching the others.
//!
//! A section is the text between `<!-- begin:NAME -->` and `<!-- end:NAME -->`.
//!
//! ```
//! use quarc_harness::doc_section::replace_section;
//! let doc = "# Results\n\n<!-- begin:a -->\nold\n<!-- end:a -->\n\ntail\n";
//! let doc = replace_section(doc, "a", "new\n").unwrap();
//! assert_eq!(doc, "# Results\n\n<!-- begin:a -->\nnew\n<!-- end:a -->\n\ntail\n");
//! // A section that is not there yet is appended.
//! let doc = replace_section(&doc, "b", "more\n").unwrap();
//! assert!(doc.ends_with("tail\n\n<!-- begin:b -->\nmore\n<!-- end:b -->\n"));
//! ```

use std::path::Path;

use quarc_train::{Error, Result};

fn markers(name: &str) -> (String, String) {
    (format!("<!-- begin:{name} -->\n"), format!("<!-- end:{name} -->\n"))
}

/// Returns `doc` with section `name` set to `body` (appended after a blank line when absent).
///
/// Errors when `name` is empty or contains `-->` or a line break, or when `doc` has the begin
/// marker without an end marker after it (a hand-edited file: nothing is guessed).
pub fn replace_section(doc: &str, name: &str, body: &str) -> Result<String> {
    if name.is_empty() || name.contains("-->") || name.contains('\n') {
        return Err(Error::InvalidConfig(format!(
            "section name {name:?} is not usable in a marker"
        )));
    }
    let (begin, end) = markers(name);
    let mut body = body.to_string();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    let section = format!("{begin}{body}{end}");
    match doc.find(&begin) {
        Some(b) => {
            let after = b + begin.len();
            let e = doc[after..].find(&end).ok_or_else(|| {
                Error::InvalidConfig(format!("section `{name}` has a begin marker but no end marker"))
            })?;
            Ok(format!("{}{section}{}", &doc[..b], &doc[after + e + end.len()..]))
        }
        None => {
            let mut out = doc.to_string();
            if !out.is_empty() {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                if !out.ends_with("\n\n") {
                    out.push('\n');
                }
            }
            out.push_str(&section);
            Ok(out)
        }
    }
}

/// Rewrites section `name` of the Markdown file at `path` atomically; a missing file starts as
/// `header` followed by the section.
pub fn write_section(path: &Path, header: &str, name: &str, body: &str) -> Result<()> {
    let doc = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => header.to_string(),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let doc = replace_section(&doc, name, body).map_err(|e| Error::Run {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    Ok(quarc_quant_core::atomic_write(path, doc.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_named_section() {
        let doc = "# R\n\n<!-- begin:a -->\nA1\n<!-- end:a -->\n\n<!-- begin:b -->\nB1\n<!-- end:b -->\n";
        let out = replace_section(doc, "b", "B2").unwrap();
        assert_eq!(
            out,
            "# R\n\n<!-- begin:a -->\nA1\n<!-- end:a -->\n\n<!-- begin:b -->\nB2\n<!-- end:b -->\n"
        );
        let out = replace_section(&out, "a", "A2\nA3\n").unwrap();
        assert_eq!(
            out,
            "# R\n\n<!-- begin:a -->\nA2\nA3\n<!-- end:a -->\n\n<!-- begin:b -->\nB2\n<!-- end:b -->\n"
        );
        // Idempotent: writing the same body twice changes nothing.
        assert_eq!(replace_section(&out, "a", "A2\nA3\n").unwrap(), out);
    }

    #[test]
    fn appends_to_a_file_without_the_section() {
        assert_eq!(
            replace_section("", "x", "X").unwrap(),
            "<!-- begin:x -->\nX\n<!-- end:x -->\n"
        );
        assert_eq!(
            replace_section("# T", "x", "X").unwrap(),
            "# T\n\n<!-- begin:x -->\nX\n<!-- end:x -->\n"
        );
    }

    #[test]
    fn refuses_a_broken_marker_pair_and_bad_names() {
        assert!(replace_section("<!-- begin:a -->\nA\n", "a", "B").is_err());
        // An end marker before the begin marker does not count.
        assert!(replace_section("<!-- end:a -->\n<!-- begin:a -->\nA\n", "a", "B").is_err());
        assert!(replace_section("", "", "B").is_err());
        assert!(replace_section("", "a-->b", "B").is_err());
        assert!(replace_section("", "a\nb", "B").is_err());
    }

    #[test]
    fn write_section_round_trips_through_a_file() {
        let dir = std::env::temp_dir().join(format!("quarc-doc-section-{}", std::process::id()));
        let path = dir.join("results.md");
        let _ = std::fs::remove_file(&path);
        write_section(&path, "# Results\n\n", "one", "first").unwrap();
        write_section(&path, "# Results\n\n", "two", "second").unwrap();
        write_section(&path, "# Results\n\n", "one", "first again").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# Results\n\n<!-- begin:one -->\nfirst again\n<!-- end:one -->\n\n<!-- begin:two -->\nsecond\n<!-- end:two -->\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
