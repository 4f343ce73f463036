//! Build script: derives the C-facing artifacts from the Rust sources.
//!
//! * `include/libnbd.h`: cbindgen reads `src/capi` (only the C ABI layer)
//!   and produces the declarations; this script frames them the way
//!   libnbd's header is framed, spells flag constants as `0x..U`, and adds
//!   the `LIBNBD_HAVE_*` and `NBD_NULL_*` macros.
//! * `libnbd.syms`: the GNU ld version script, one node per entry of
//!   `abi::NODES`, each inheriting the one before. It is written to
//!   `OUT_DIR` and next to the built staticlib (`target/<profile>/`), where
//!   the Makefile picks it up.
//! * `man/man3/*.3`: a man page for every call and the `libnbd(3)`
//!   overview (`build_man.rs`), from the same cbindgen output as the header
//!   (so from the doc comments in `src/capi`) and the same table; written
//!   next to the staticlib, where `make install` picks them up.
//!
//! `src/abi.rs` is the one list of exported calls; it is compiled into this
//! script as a module so nothing here repeats it. Files are only rewritten
//! when their content changes, so builds do not loop.

#[path = "src/abi.rs"]
#[allow(dead_code)]
mod abi;

#[path = "build_man.rs"]
mod man;

use std::collections::{BTreeSet, HashMap};
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// The callbacks libnbd treats as optional arguments (its `OClosure`s); each
/// gets an `NBD_NULL_<NAME>` macro, a struct literal with a NULL callback.
const OPTIONAL_CALLBACKS: &[&str] = &["completion"];

/// The attribute macros of libnbd's header, with the same names, the same
/// conditions (GCC 12 or later) and the same effect; a program may define
/// `LIBNBD_ATTRIBUTE_NONNULL` itself before including the header.
const ATTRIBUTE_MACROS: &str = "\
#if defined (__GNUC__)
#define LIBNBD_GCC_VERSION \\
    (__GNUC__ * 10000 + __GNUC_MINOR__ * 100 + __GNUC_PATCHLEVEL__)
#endif

/* Pointer parameters that must not be NULL (GCC 12 or later warns). */
#ifndef LIBNBD_ATTRIBUTE_NONNULL
#if defined (__GNUC__) && LIBNBD_GCC_VERSION >= 120000
#define LIBNBD_ATTRIBUTE_NONNULL(...) \\
  __attribute__ ((__nonnull__ (__VA_ARGS__)))
#else
#define LIBNBD_ATTRIBUTE_NONNULL(...)
#endif
#endif

/* A call returning memory that FN releases (GCC 12 or later). */
#if defined (__GNUC__) && LIBNBD_GCC_VERSION >= 120000
#define LIBNBD_ATTRIBUTE_ALLOC_DEALLOC(fn) \\
  __attribute__ ((__malloc__, __malloc__ (fn, 1)))
#else
#define LIBNBD_ATTRIBUTE_ALLOC_DEALLOC(fn)
#endif

";

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build_man.rs");

    let script = version_script();
    write_if_changed(&out_dir.join("libnbd.syms"), &script);
    if let Some(dir) = profile_dir(&out_dir) {
        write_if_changed(&dir.join("libnbd.syms"), &script);
    }

    check_doc_comments(&root.join("src/capi"));
    let types_rs = fs::read_to_string(root.join("src/capi/types.rs")).unwrap_or_default();
    let parsed = run_cbindgen(&root, &types_rs);
    let header = header(&parsed, &types_rs);
    write_if_changed(&root.join("include").join("libnbd.h"), &header);
    write_if_changed(
        &root.join("include").join("libnbd-ext.h"),
        &ext_header(&parsed),
    );

    let man_dir = profile_dir(&out_dir).unwrap_or(out_dir).join("man");
    man_pages(&root, &parsed, &man_dir);
}

/// The man pages (see `build_man.rs`): `man3/<call>.3` for every call in
/// `abi::SYMBOLS` and `man3/libnbd.3`, under `dir`. Pages of calls no
/// longer in the table are removed.
fn man_pages(root: &Path, parsed: &Parsed, dir: &Path) {
    let handle_rs = fs::read_to_string(root.join("src/handle/mod.rs")).unwrap_or_default();
    let version = handle_rs
        .lines()
        .find_map(|l| l.trim().strip_prefix("pub const VERSION: &str = \""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("")
        .to_string();
    let calls: Vec<man::Call<'_>> = abi::SYMBOLS
        .iter()
        .chain(abi::EXT_SYMBOLS)
        .filter_map(|sym| {
            let text = parsed
                .functions
                .get(sym.name)
                .or_else(|| parsed.ext_functions.get(sym.name))?;
            Some(man::Call {
                name: sym.name,
                node: sym.node,
                text,
                attrs: attributes(sym.name, text.trim_end()),
            })
        })
        .collect();
    let names: BTreeSet<&str> = calls.iter().map(|c| c.name).collect();
    let man3 = dir.join("man3");
    let mut wanted = BTreeSet::new();
    for call in &calls {
        let file = format!("{}.3", call.name);
        write_if_changed(&man3.join(&file), &man::call_page(call, &names, &version));
        wanted.insert(file);
    }
    write_if_changed(
        &man3.join("libnbd.3"),
        &man::overview_page(&calls, &[abi::NODES, abi::EXT_NODES].concat(), &version),
    );
    wanted.insert("libnbd.3".to_string());
    if let Ok(entries) = fs::read_dir(&man3) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".3") && !wanted.contains(&name) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The doc comments of `src/capi` become C comments in the header: a `*/`
/// in one would end its comment early and break the declaration after it.
fn check_doc_comments(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let doc = line.trim_start();
            if doc.starts_with("///") && doc.contains("*/") {
                panic!(
                    "{}:{}: a doc comment there contains \"*/\", which would end its \
                     comment in include/libnbd.h",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}

/// `<target>/<profile>` (where cargo puts `libnbd.a`), from
/// `OUT_DIR` = `<target>/<profile>/build/<package>-<hash>/out`.
fn profile_dir(out_dir: &Path) -> Option<PathBuf> {
    let build = out_dir.parent()?.parent()?;
    if build.file_name()? != "build" {
        println!(
            "cargo:warning=unexpected OUT_DIR layout {}; libnbd.syms only written there",
            out_dir.display()
        );
        return None;
    }
    Some(build.parent()?.to_path_buf())
}

fn write_if_changed(path: &Path, content: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == content) {
        return;
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    // Write a sibling and rename it over, so a concurrent build never reads a
    // half-written file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, content).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
}

/// The GNU ld version script: every call at its node, everything else local.
fn version_script() -> String {
    let mut seen = BTreeSet::new();
    for sym in abi::SYMBOLS {
        assert!(
            abi::NODES.contains(&sym.node),
            "src/abi.rs: {} is at node {}, which NODES does not list",
            sym.name,
            sym.node
        );
        assert!(
            seen.insert(sym.name),
            "src/abi.rs: {} is listed twice",
            sym.name
        );
    }
    let mut s = String::from("/* Generated by build.rs from src/abi.rs; do not edit. */\n\n");
    for (i, node) in abi::NODES.iter().enumerate() {
        writeln!(s, "{node} {{").unwrap();
        let mut calls = abi::SYMBOLS
            .iter()
            .filter(|sym| sym.node == *node)
            .peekable();
        if calls.peek().is_some() {
            s.push_str("  global:\n");
        }
        for sym in calls {
            writeln!(s, "    {};", sym.name).unwrap();
        }
        if i == 0 {
            s.push_str("  local: *;\n};\n\n");
        } else {
            writeln!(s, "}} {};\n", abi::NODES[i - 1]).unwrap();
        }
    }
    for sym in abi::EXT_SYMBOLS {
        assert!(
            abi::EXT_NODES.contains(&sym.node) && sym.name.starts_with("rnbd_"),
            "src/abi.rs: extension call {} must be rnbd_* at an EXT_NODES node",
            sym.name
        );
        assert!(
            seen.insert(sym.name),
            "src/abi.rs: {} is listed twice",
            sym.name
        );
    }
    for node in abi::EXT_NODES {
        writeln!(s, "{node} {{\n  global:").unwrap();
        for sym in abi::EXT_SYMBOLS.iter().filter(|sym| sym.node == *node) {
            writeln!(s, "    {};", sym.name).unwrap();
        }
        s.push_str("};\n\n");
    }
    s
}

/// One declaration as cbindgen printed it, with any doc comment above it.
enum Item {
    /// `#define NAME VALUE`
    Const { name: String, value: String },
    /// `typedef struct { ... } NAME;`
    Struct { name: String, text: String },
    /// A function prototype.
    Function { name: String, text: String },
    /// Anything else cbindgen emitted (kept, in its order).
    Other(String),
}

/// `text` without its `/* */` and `//` comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.map_or(true, |l| b < l) => {
                out.push_str(&rest[..b]);
                rest = rest[b + 2..]
                    .find("*/")
                    .map_or("", |e| &rest[b + 2 + e + 2..]);
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |e| &rest[l + e..]);
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

fn classify(block: &str) -> Item {
    let stripped = strip_comments(block);
    let code: Vec<&str> = stripped.lines().filter(|l| !l.trim().is_empty()).collect();
    let first = code.first().copied().unwrap_or("");
    if let Some(rest) = first.strip_prefix("#define ") {
        if code.len() == 1 {
            let mut parts = rest.splitn(2, ' ');
            let name = parts.next().unwrap_or("").to_string();
            let value = parts.next().unwrap_or("").trim().to_string();
            return Item::Const { name, value };
        }
    }
    let joined = code.join(" ");
    if first.starts_with("typedef struct") {
        let name = joined
            .trim_end()
            .trim_end_matches(';')
            .rsplit(|c: char| c == '}' || c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_string();
        return Item::Struct {
            name,
            text: block.to_string(),
        };
    }
    if joined.trim_end().ends_with(");") {
        if let Some(paren) = joined.find('(') {
            let name = joined[..paren]
                .trim_end()
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
                .to_string();
            return Item::Function {
                name,
                text: block.to_string(),
            };
        }
    }
    Item::Other(block.to_string())
}

/// The flag set an integer constant belongs to, if any: the set is named by
/// the prefix that has a `_MASK` member (`LIBNBD_CMD_FLAG_` for
/// `LIBNBD_CMD_FLAG_FUA`, because `LIBNBD_CMD_FLAG_MASK` exists). libnbd
/// writes flags in hex with a `U` suffix; enums and plain constants stay
/// decimal `int`s.
fn flag_set<'a>(name: &'a str, names: &BTreeSet<String>) -> Option<&'a str> {
    name.match_indices('_')
        .map(|(i, _)| &name[..=i])
        .find(|prefix| names.contains(&format!("{prefix}MASK")))
}

fn parse_int(value: &str) -> Option<u64> {
    let v = value.trim_end_matches(['u', 'U', 'l', 'L']);
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Names of the `nbd_*_callback` structs declared in `src/capi/types.rs`.
/// cbindgen only emits structs some function uses; these are listed
/// explicitly so the header always has all of them.
fn callback_structs(types_rs: &str) -> Vec<String> {
    types_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub struct "))
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|n| n.starts_with("nbd_") && n.ends_with("_callback"))
        .collect()
}

/// `pub const LIBNBD_X: &str = "...";` constants of `src/capi/types.rs`,
/// which cbindgen cannot express; they become string macros.
fn string_consts(types_rs: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in types_rs.lines() {
        let Some(rest) = line.trim().strip_prefix("pub const LIBNBD_") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(':') else {
            continue;
        };
        let Some((ty, value)) = rest.split_once('=') else {
            continue;
        };
        let ty = ty.trim();
        if !(ty.starts_with('&') && (ty.ends_with("str") || ty.ends_with("CStr"))) {
            continue;
        }
        let value = value.trim().trim_end_matches(';').trim();
        let value = value.strip_prefix('c').unwrap_or(value);
        if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            out.push((format!("LIBNBD_{}", name.trim()), value.to_string()));
        }
    }
    out
}

fn define(out: &mut String, name: &str, value: &str) {
    writeln!(out, "#define {name:<40} {value}").unwrap();
}

/// The declarations cbindgen finds in `src/capi`, sorted by kind.
#[derive(Default)]
struct Parsed {
    consts: Vec<(String, String)>,
    structs: Vec<(String, String)>,
    functions: HashMap<String, String>,
    others: Vec<String>,
    /// The `RNBD_*` constants, for `libnbd-ext.h`.
    ext_consts: Vec<(String, String)>,
    /// The `rnbd_*` calls, for `libnbd-ext.h`.
    ext_functions: HashMap<String, String>,
}

/// The parameter and result types of `src/capi/args.rs` (and
/// `MultiConnArg`, `MultiConnOwned`, in `src/capi/ext/multi.rs`) and the C types they stand
/// for: cbindgen sees a newtype over a pointer; the header shows the
/// pointer, as libnbd spells it.
const ARG_TYPES: &[(&str, &str)] = &[
    ("CStrArg", "const char *"),
    ("CStrList", "char **"),
    ("BufIn", "const void *"),
    ("BufOut", "void *"),
    ("HandleArg", "struct nbd_handle *"),
    ("HandleOwned", "struct nbd_handle *"),
    ("MallocStr", "char *"),
    ("StaticStr", "const char *"),
    ("SockAddrArg", "const struct sockaddr *"),
    ("FdArg", "int "),
    ("MultiConnArg", "struct rnbd_multi_conn *"),
    ("MultiConnOwned", "struct rnbd_multi_conn *"),
];

/// `raw` with every parameter type of [`ARG_TYPES`] spelt as its C type:
/// `CStrArg name` becomes `const char *name`.
fn spell_arg_types(raw: &str) -> String {
    let mut out = raw.to_string();
    for (name, c_type) in ARG_TYPES {
        let pattern = format!("{name} ");
        let mut done = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&pattern) {
            let word_start = rest[..i]
                .chars()
                .next_back()
                .map_or(true, |c| !(c.is_ascii_alphanumeric() || c == '_'));
            done.push_str(&rest[..i]);
            done.push_str(if word_start { c_type } else { &pattern });
            rest = &rest[i + pattern.len()..];
        }
        done.push_str(rest);
        out = done;
    }
    out
}

fn run_cbindgen(root: &Path, types_rs: &str) -> Parsed {
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    config.export.include.extend(callback_structs(types_rs));
    config
        .export
        .exclude
        .extend(ARG_TYPES.iter().map(|(name, _)| name.to_string()));
    // The generics behind HandleArg, MultiConnArg and their *Owned.
    config
        .export
        .exclude
        .extend(["ObjArg".to_string(), "ObjOwned".to_string()]);
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi/mod.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen could not read src/capi: {e}"));
    let mut raw = Vec::new();
    bindings.write(&mut raw);
    let raw = spell_arg_types(&String::from_utf8(raw).expect("cbindgen output is UTF-8"));

    let mut parsed = Parsed::default();
    for block in raw.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
        match classify(block) {
            Item::Const { name, value } if name.starts_with("RNBD_") => {
                parsed.ext_consts.push((name, value))
            }
            Item::Const { name, value } => parsed.consts.push((name, value)),
            Item::Struct { name, text } => parsed.structs.push((name, text)),
            Item::Function { name, text } if name.starts_with("rnbd_") => {
                if abi::EXT_SYMBOLS.iter().any(|s| s.name == name) {
                    parsed.ext_functions.insert(name, text);
                } else {
                    println!(
                        "cargo:warning=libnbd-ext.h: {name} is not in src/abi.rs \
                         EXT_SYMBOLS (so not exported); left out"
                    );
                }
            }
            Item::Function { name, text } => {
                if !name.starts_with("nbd_") {
                    println!("cargo:warning=libnbd.h: {name} is not an nbd_* call; left out");
                } else if !abi::SYMBOLS.iter().any(|s| s.name == name) {
                    println!(
                        "cargo:warning=libnbd.h: {name} is not in src/abi.rs SYMBOLS \
                         (so not exported); left out"
                    );
                } else {
                    parsed.functions.insert(name, text);
                }
            }
            Item::Other(text) => parsed.others.push(text),
        }
    }
    parsed
}

/// The integer constants, grouped (`LIBNBD_TLS_*`, `LIBNBD_CMD_FLAG_*`, ...):
/// groups in the order they first appear, members in source order except
/// that a flag set's `_MASK` comes last, a blank line after each group.
fn write_constants(h: &mut String, consts: &[(String, String)]) {
    let names: BTreeSet<String> = consts.iter().map(|(n, _)| n.clone()).collect();
    let mut groups: Vec<(&str, Vec<(bool, String)>)> = Vec::new();
    for (name, value) in consts {
        let set = flag_set(name, &names);
        let group = set.unwrap_or_else(|| name.rsplit_once('_').map_or(name.as_str(), |(g, _)| g));
        let value = match (set, parse_int(value)) {
            (Some(_), Some(n)) => format!("0x{n:02x}U"),
            _ => value.clone(),
        };
        let mut line = String::new();
        define(&mut line, name, &value);
        let is_mask = set.is_some() && name.ends_with("_MASK");
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, lines)) => lines.push((is_mask, line)),
            None => groups.push((group, vec![(is_mask, line)])),
        }
    }
    for (_, lines) in &mut groups {
        lines.sort_by_key(|(is_mask, _)| *is_mask);
        for (_, line) in lines.iter() {
            h.push_str(line);
        }
        h.push('\n');
    }
}

/// The callback structs, each with its `LIBNBD_HAVE_NBD_*_CALLBACK`, then
/// the `NBD_NULL_*` macros.
fn write_callbacks(h: &mut String, structs: &[(String, String)]) {
    if !structs.is_empty() {
        h.push_str("/* Callbacks are passed by value. */\n\n");
    }
    for (name, text) in structs {
        h.push_str(text);
        h.push('\n');
        if let Some(cb) = name
            .strip_prefix("nbd_")
            .and_then(|n| n.strip_suffix("_callback"))
        {
            let have = format!("LIBNBD_HAVE_NBD_{}_CALLBACK", cb.to_ascii_uppercase());
            define(h, &have, "1");
        }
        h.push('\n');
    }
    for cb in OPTIONAL_CALLBACKS {
        let ty = format!("nbd_{cb}_callback");
        if structs.iter().any(|(n, _)| *n == ty) {
            let upper = cb.to_ascii_uppercase();
            writeln!(
                h,
                "#define NBD_NULL_{upper} (({ty}) {{ .callback = NULL }})"
            )
            .unwrap();
        }
    }
    h.push('\n');
}

/// The return type and the parameters of a prototype as cbindgen prints it
/// (`int nbd_x(struct nbd_handle *h, const char *name);`).
fn prototype_parts(text: &str) -> (String, Vec<String>) {
    let code = strip_comments(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let open = code.find('(').expect("a prototype has a parameter list");
    let close = code.rfind(')').expect("a prototype has a parameter list");
    let before = &code[..open];
    let name_start = before
        .trim_end()
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let ret = before[..name_start].trim().to_string();
    // Parameters are split at the commas outside parentheses.
    let mut params = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in code[open + 1..close].chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                params.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() && cur.trim() != "void" {
        params.push(cur.trim().to_string());
    }
    (ret, params)
}

/// The attributes libnbd's header gives a call: `LIBNBD_ATTRIBUTE_ALLOC_DEALLOC`
/// on calls returning memory the caller releases, `LIBNBD_ATTRIBUTE_NONNULL`
/// listing every pointer parameter that `abi::NULLABLE_PARAMS` does not allow
/// to be NULL.
fn attributes(name: &str, text: &str) -> Vec<String> {
    let (ret, params) = prototype_parts(text);
    let mut attrs = Vec::new();
    let dealloc = abi::DEALLOCATORS
        .iter()
        .find(|(call, _)| *call == name)
        .map(|(_, d)| *d)
        .or_else(|| (ret.replace(' ', "") == "char*").then_some("__builtin_free"));
    if let Some(d) = dealloc {
        attrs.push(format!("LIBNBD_ATTRIBUTE_ALLOC_DEALLOC ({d})"));
    }
    let nullable = abi::NULLABLE_PARAMS
        .iter()
        .find(|(call, _)| *call == name)
        .map_or(&[][..], |(_, p)| *p);
    let nonnull: Vec<String> = params
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1, p))
        .filter(|(n, p)| p.contains('*') && !nullable.contains(n))
        .map(|(n, _)| n.to_string())
        .collect();
    if !nonnull.is_empty() {
        attrs.push(format!("LIBNBD_ATTRIBUTE_NONNULL ({})", nonnull.join(", ")));
    }
    attrs
}

/// The calls in `abi::SYMBOLS` order, each with its attributes and followed
/// by its `LIBNBD_HAVE_*`.
fn write_functions(
    h: &mut String,
    functions: &HashMap<String, String>,
    symbols: &[abi::Symbol],
    have_prefix: &str,
) {
    let mut undeclared = Vec::new();
    let mut declared = BTreeSet::new();
    for sym in symbols {
        let Some(text) = functions.get(sym.name) else {
            undeclared.push(sym.name);
            continue;
        };
        if let Some((_, d)) = abi::DEALLOCATORS.iter().find(|(c, _)| *c == sym.name) {
            assert!(
                declared.contains(d),
                "src/abi.rs: {}'s deallocator {d} must come before it in SYMBOLS",
                sym.name
            );
        }
        declared.insert(sym.name);
        let text = text.trim_end();
        let attrs = attributes(sym.name, text);
        match text.strip_suffix(';') {
            Some(proto) if !attrs.is_empty() => {
                h.push_str(proto);
                for a in &attrs {
                    h.push_str("\n    ");
                    h.push_str(a);
                }
                h.push(';');
            }
            _ => h.push_str(text),
        }
        h.push('\n');
        define(
            h,
            &format!("{have_prefix}{}", sym.name.to_ascii_uppercase()),
            "1",
        );
        h.push('\n');
    }
    if !undeclared.is_empty() {
        println!(
            "cargo:warning=libnbd.h: {} call(s) in src/abi.rs have no extern \"C\" fn in \
             src/capi: {}",
            undeclared.len(),
            undeclared.join(", ")
        );
    }
}

fn header(parsed: &Parsed, types_rs: &str) -> String {
    let mut h = String::new();
    h.push_str(
        "/* libnbd.h: the C interface of rust-libnbd, a Network Block Device\n \
         * (NBD) client library compatible with libnbd.\n \
         *\n \
         * Generated by build.rs (cbindgen over src/capi, calls from\n \
         * src/abi.rs).  Do not edit: change the Rust sources and rebuild.\n \
         */\n\n",
    );
    h.push_str("#ifndef LIBNBD_H\n#define LIBNBD_H\n\n");
    h.push_str("#include <stdbool.h>\n#include <stdint.h>\n#include <sys/socket.h>\n\n");
    h.push_str("#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    h.push_str(ATTRIBUTE_MACROS);
    h.push_str("/* Opaque: created by nbd_create, freed by nbd_close. */\nstruct nbd_handle;\n\n");

    write_constants(&mut h, &parsed.consts);
    for text in &parsed.others {
        h.push_str(text);
        h.push_str("\n\n");
    }
    write_callbacks(&mut h, &parsed.structs);
    write_functions(&mut h, &parsed.functions, abi::SYMBOLS, "LIBNBD_HAVE_");

    let strings = string_consts(types_rs);
    if !strings.is_empty() {
        h.push_str("/* Metadata namespaces and contexts. */\n");
        for (name, value) in &strings {
            define(&mut h, name, value);
        }
        h.push('\n');
    }

    h.push_str("#ifdef __cplusplus\n}\n#endif\n\n#endif /* LIBNBD_H */\n");
    h
}

/// `include/libnbd-ext.h`: the calls beyond libnbd (`abi::EXT_SYMBOLS`),
/// their `RNBD_*` constants and `RNBD_HAVE_*` macros. It includes
/// `<libnbd.h>` for the handle, the callback structs and the attribute
/// macros.
fn ext_header(parsed: &Parsed) -> String {
    let mut h = String::new();
    h.push_str(
        "/* libnbd-ext.h: the calls of rust-libnbd beyond libnbd's API\n \
         * (prefix rnbd_, constants RNBD_*, symbol version RNBD_1.0), so that\n \
         * no name can collide with a call of a future libnbd.  Each call has\n \
         * an RNBD_HAVE_<CALL> macro, e.g. RNBD_HAVE_RNBD_SET_TLS_PSK.\n \
         *\n \
         * Generated by build.rs (cbindgen over src/capi, calls from\n \
         * src/abi.rs).  Do not edit: change the Rust sources and rebuild.\n \
         */\n\n",
    );
    h.push_str("#ifndef LIBNBD_EXT_H\n#define LIBNBD_EXT_H\n\n");
    h.push_str("#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n\n");
    h.push_str("#include <libnbd.h>\n\n");
    h.push_str("#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    h.push_str(
        "/* Opaque: created by rnbd_multi_conn_connect*, freed by\n \
         * rnbd_multi_conn_close. */\nstruct rnbd_multi_conn;\n\n",
    );
    write_constants(&mut h, &parsed.ext_consts);
    write_functions(
        &mut h,
        &parsed.ext_functions,
        abi::EXT_SYMBOLS,
        "RNBD_HAVE_",
    );
    h.push_str("#ifdef __cplusplus\n}\n#endif\n\n#endif /* LIBNBD_EXT_H */\n");
    h
}
