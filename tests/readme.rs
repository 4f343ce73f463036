//! The README's table of calls stays true: one row per exported call of
//! src/abi.rs, at its version node (every call is implemented: "works").

use std::collections::BTreeMap;

// The table of exported calls, as build.rs reads it.
#[allow(dead_code)]
#[path = "../src/abi.rs"]
mod abi;

fn read(path: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn readme_call_table_matches_the_library() {
    let readme = read("README.md");
    let begin = readme
        .find("<!-- calls:begin -->")
        .expect("table start marker");
    let end = readme.find("<!-- calls:end -->").expect("table end marker");
    let mut rows = BTreeMap::new();
    for line in readme[begin..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() == 5 && cells[1].starts_with("`nbd_") {
            let name = cells[1].trim_matches('`').to_string();
            let dup = rows.insert(name.clone(), (cells[2].to_string(), cells[3].to_string()));
            assert!(dup.is_none(), "{name} is listed twice");
        }
    }

    let mut expected = BTreeMap::new();
    for s in abi::SYMBOLS {
        expected.insert(
            s.name.to_string(),
            (s.node.to_string(), "works".to_string()),
        );
    }
    for (name, row) in &expected {
        assert_eq!(rows.get(name), Some(row), "README row for {name}");
    }
    for name in rows.keys() {
        assert!(
            expected.contains_key(name),
            "README lists {name}, which is not exported"
        );
    }
}
