//! Every Rust snippet of the README is the README of the crate its section advertises, where it
//! runs as that crate's doc-test (`#[cfg(doctest)]` in each crate's lib.rs) against it alone.

fn rust_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("```rust") {
        let body_start = rest[start..].find('\n').map_or(rest.len(), |i| start + i + 1);
        let end = rest[body_start..].find("```").map_or(rest.len(), |i| body_start + i);
        out.push((offset + start, rest[body_start..end].to_string()));
        offset += end;
        rest = &rest[end..];
    }
    out
}

#[test]
fn every_readme_snippet_is_a_doc_test_of_the_crate_it_advertises() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let blocks = rust_blocks(&readme);
    assert!(
        blocks.len() >= 3,
        "expected the three usage snippets, found {}",
        blocks.len()
    );
    for (at, code) in blocks {
        let heading = readme[..at]
            .rfind("\n#")
            .map_or("", |h| readme[h..at].lines().nth(1).unwrap_or(""));
        let krate = heading
            .split('`')
            .find_map(|part| part.strip_prefix("cargo add "))
            .unwrap_or_else(|| panic!("the section `{heading}` names no crate (`cargo add …`)"));
        let folder = krate.strip_prefix("quarc-").expect("a quarc crate");
        let crate_readme = std::fs::read_to_string(format!("{root}/crates/{folder}/README.md")).unwrap();
        assert!(
            crate_readme.contains(&code),
            "the snippet under `{heading}` differs from crates/{folder}/README.md (its doc-test)"
        );
        let lib = std::fs::read_to_string(format!("{root}/crates/{folder}/src/lib.rs")).unwrap();
        assert!(
            lib.contains("#[doc = include_str!(\"../README.md\")]"),
            "crates/{folder} does not doc-test its README"
        );
    }
}
