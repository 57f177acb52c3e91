//! The house rules of STYLE.md, checked on every run: data flows one way
//! (adapters → domain → ports ← store; crypto, telemetry and tls leaves), and no module grows
//! past 400 lines of non-test code. A rule broken here is a failing test,
//! not a review comment.
//!
//! The check reads `src/**/*.rs` as text: test code (`#[cfg(test)]` items and
//! `tests.rs` files) and comments are dropped, every `crate::`, `super::` and
//! `self::` path is resolved to an absolute module path (use-groups
//! expanded), and external crates are recognised by their first segment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MAX_CODE_LINES: usize = 400;

/// Crates the domain must not know: transports, the ORM, generated code.
const INFRA_CRATES: [&str; 6] = ["tonic", "axum", "sea_orm", "sqlx", "prost", "envoy_types"];
/// Our modules the domain must not know.
const OUTER_MODULES: [&str; 6] = ["app", "grpc", "http", "store", "config", "cli"];

/// One source file, as the rules see it.
struct Source {
    /// Relative to `src/`, e.g. `domain/check/pipeline.rs`.
    file: String,
    /// Module path, e.g. `["domain", "check", "pipeline"]`.
    module: Vec<String>,
    /// Non-test code with comments removed.
    code: String,
}

/// What one file refers to.
#[derive(Debug, Default)]
struct Refs {
    /// Absolute paths inside this crate, as segments (`["domain", "model", "KeyRecord"]`).
    ours: BTreeSet<Vec<String>>,
    /// First segments of external paths (`tonic`, `axum`, …).
    external: BTreeSet<String>,
}

fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_owned());
    }
    parts
}

fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        if depth > 0 {
            if b[i..].starts_with(b"*/") {
                depth -= 1;
                i += 2;
            } else if b[i..].starts_with(b"/*") {
                depth += 1;
                i += 2;
            } else {
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            depth = 1;
            i += 2;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'"' {
            // Keep string literals' lines but drop their contents, so a
            // message mentioning `crate::app` is not an import.
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else {
            let ch = src[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Drops every item marked `#[cfg(test)]`: the attribute and the item up to
/// its closing brace (or `;` for `mod tests;` and `use` lines).
fn strip_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn read_sources(root: &Path) -> Vec<Source> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, files);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    files
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != "tests.rs"))
        .map(|p| {
            let rel = p.strip_prefix(root).expect("under src").to_path_buf();
            let text = std::fs::read_to_string(&p).expect("read source");
            Source {
                file: rel.to_string_lossy().replace('\\', "/"),
                module: module_path(&rel),
                code: strip_test_items(&strip_comments(&text)),
            }
        })
        .collect()
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand_use(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let close = tree.rfind('}').unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(join(prefix, path));
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}::{path}"),
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path in `code`: the expanded `use` trees, and inline `a::b::c` paths.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    // `use` statements (possibly multi-line, possibly `pub use`).
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + 4..];
        if before.is_none_or(|c| !is_ident_char(c))
            && let Some(end) = after.find(';')
        {
            expand_use(&after[..end], "", &mut out);
            rest = &after[end..];
        } else {
            rest = after;
        }
    }
    // Inline paths: a run of `ident::ident::…` not preceded by `::`.
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident_char(chars[i]) && (i == 0 || !is_ident_char(chars[i - 1])) {
            let start = i;
            while i < chars.len()
                && (is_ident_char(chars[i]) || (chars[i] == ':' && chars.get(i + 1) == Some(&':')))
            {
                i += if chars[i] == ':' { 2 } else { 1 };
            }
            let s: String = chars[start..i].iter().collect();
            let preceded = start >= 2 && chars[start - 1] == ':' && chars[start - 2] == ':';
            if s.contains("::") && !preceded {
                out.push(s.trim_end_matches("::").to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

fn refs(src: &Source) -> Refs {
    let mut refs = Refs::default();
    for path in paths(&src.code) {
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segs.first() else { continue };
        let mut abs: Vec<String> = match *first {
            "crate" => Vec::new(),
            "self" => src.module.clone(),
            "super" => src.module.clone(),
            other => {
                refs.external.insert(other.to_owned());
                continue;
            }
        };
        let mut rest = &segs[1..];
        if *first == "super" {
            abs.pop();
            while rest.first() == Some(&"super") {
                abs.pop();
                rest = &rest[1..];
            }
        }
        abs.extend(rest.iter().map(|s| (*s).to_owned()));
        refs.ours.insert(abs);
    }
    refs
}

/// Every rule broken by `src`, as messages.
fn violations(src: &Source) -> Vec<String> {
    let r = refs(src);
    let top = src.module.first().map(String::as_str).unwrap_or("");
    let mut bad = Vec::new();
    let mut ours = |rule: &str, ok: &dyn Fn(&[String]) -> bool| {
        for p in &r.ours {
            if !ok(p) {
                bad.push(format!("{}: {rule}: `crate::{}`", src.file, p.join("::")));
            }
        }
    };
    match top {
        "domain" => ours("domain/ imports an outer layer", &|p| {
            p.first()
                .is_none_or(|s| !OUTER_MODULES.contains(&s.as_str()))
        }),
        "ports" => ours("ports.rs imports more than domain::model", &|p| {
            p.first().is_some_and(|s| s == "ports")
                || (p.len() >= 2 && p[0] == "domain" && p[1] == "model")
        }),
        "store" => ours("store/ imports domain beyond domain::model", &|p| {
            !(p.first().is_some_and(|s| s == "domain") && p.get(1).is_none_or(|s| s != "model"))
        }),
        "grpc" | "http" => ours("adapters import the composition root", &|p| {
            p.first().is_none_or(|s| s != "app")
        }),
        "crypto" => ours("crypto/ imports outside itself", &|p| {
            p.first().is_some_and(|s| s == "crypto")
        }),
        "telemetry" => ours("telemetry/ imports outside itself", &|p| {
            p.first().is_some_and(|s| s == "telemetry")
        }),
        "tls" => ours("tls.rs imports outside itself", &|p| {
            p.first().is_some_and(|s| s == "tls")
        }),
        _ => {}
    }
    if top == "domain" {
        for c in &r.external {
            if INFRA_CRATES.contains(&c.as_str()) {
                bad.push(format!("{}: domain/ uses the `{c}` crate", src.file));
            }
        }
    }
    let lines = src.code.lines().filter(|l| l.trim().len() > 1).count();
    if lines > MAX_CODE_LINES {
        bad.push(format!(
            "{}: {lines} lines of non-test code (at most {MAX_CODE_LINES}: split it by operation)",
            src.file
        ));
    }
    bad
}

/// The unit an import circle is counted between: a top-level module, except
/// that each `domain::X` counts on its own (ports depends on `domain::model`
/// while `domain::check` depends on ports; that is no circle).
fn component(path: &[String]) -> Option<String> {
    match path.first().map(String::as_str) {
        None | Some("pb") => None,
        Some("domain") => Some(match path.get(1) {
            Some(sub) if sub != "Error" && sub != "Result" => format!("domain::{sub}"),
            _ => "domain".to_owned(),
        }),
        Some(top) => Some(top.to_owned()),
    }
}

/// Every import circle between components, each as its members.
fn circles(sources: &[Source]) -> Vec<Vec<String>> {
    use std::collections::BTreeMap;
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for src in sources {
        let Some(from) = component(&src.module) else {
            continue;
        };
        let targets = edges.entry(from.clone()).or_default();
        for p in refs(src).ours {
            if let Some(to) = component(&p)
                && to != from
            {
                targets.insert(to);
            }
        }
    }
    // Two components are in one circle when each reaches the other.
    let reach = |start: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(n) = todo.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|k| (k, reach(k))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (node, r) in &reaches {
        if !r.contains(*node) {
            continue;
        }
        let members: Vec<String> = r
            .iter()
            .filter(|m| reaches.get(m).is_some_and(|back| back.contains(*node)))
            .cloned()
            .collect();
        if !out.contains(&members) {
            out.push(members);
        }
    }
    out
}

#[test]
fn the_source_tree_keeps_the_layer_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_sources(&root);
    assert!(sources.len() > 40, "read only {} files", sources.len());
    let mut bad: Vec<String> = sources.iter().flat_map(violations).collect();
    for circle in circles(&sources) {
        bad.push(format!("import circle: {}", circle.join(" ⇄ ")));
    }
    assert!(bad.is_empty(), "layer rules broken:\n{}", bad.join("\n"));
}

#[test]
fn a_circle_broken_in_on_purpose_is_caught() {
    let sources = [
        source("domain/check.rs", "use super::tokens::TokenManager;"),
        source("domain/tokens.rs", "use super::check::Reason;"),
        source("domain/reason.rs", "use super::model::KeyStatus;"),
    ];
    let found = circles(&sources);
    assert_eq!(
        found,
        vec![vec![
            "domain::check".to_owned(),
            "domain::tokens".to_owned()
        ]]
    );
    assert!(circles(&sources[1..]).is_empty());
}

fn source(file: &str, text: &str) -> Source {
    Source {
        file: file.to_owned(),
        module: module_path(Path::new(file)),
        code: strip_test_items(&strip_comments(text)),
    }
}

/// The checker itself: each rule, broken on purpose, is caught.
#[test]
fn each_rule_broken_on_purpose_is_caught() {
    let cases = [
        ("domain/check.rs", "use crate::app::Core;"),
        (
            "domain/tokens/mint.rs",
            "use super::super::super::grpc::status;",
        ),
        ("domain/keys.rs", "fn f() -> tonic::Status { todo() }"),
        (
            "domain/keys.rs",
            "use crate::{domain::model::KeyRecord, store::SqlStore};",
        ),
        ("ports.rs", "use crate::domain::signing::SigningManager;"),
        ("store/mod.rs", "use crate::domain::keys::KeyManager;"),
        ("grpc/key.rs", "use crate::app::Core;"),
        ("http/oauth/token.rs", "fn f(c: &crate::app::Core) {}"),
        ("crypto/jwt.rs", "use crate::domain::model::Millis;"),
        ("telemetry/metrics.rs", "use crate::domain::reason::Reason;"),
        ("tls.rs", "use crate::config::Settings;"),
    ];
    for (file, text) in cases {
        assert!(
            !violations(&source(file, text)).is_empty(),
            "{file}: `{text}` was not caught"
        );
    }
    let long = "fn f() {}\n".repeat(MAX_CODE_LINES + 1);
    assert!(!violations(&source("domain/x.rs", &long)).is_empty());
}

/// What the rules allow stays allowed: tests, comments, strings, the model.
#[test]
fn allowed_code_is_not_flagged() {
    let cases = [
        (
            "domain/check.rs",
            "use super::model::KeyRecord;\nuse crate::crypto::sha256;",
        ),
        (
            "domain/check.rs",
            "// crate::app is mentioned in a comment\nconst S: &str = \"crate::grpc\";",
        ),
        (
            "domain/check.rs",
            "#[cfg(test)]\nmod tests {\n    use crate::store::SqlStore;\n}\n",
        ),
        (
            "ports.rs",
            "use crate::domain::model::{Account, KeyRecord};",
        ),
        (
            "store/keys.rs",
            "use crate::domain::model::KeyRecord;\nuse crate::ports::Store;",
        ),
        (
            "crypto/jwt.rs",
            "use super::secret::Secret;\nuse crate::crypto::sha256;",
        ),
        ("grpc/key.rs", "use crate::domain::keys::KeyManager;"),
    ];
    for (file, text) in cases {
        let v = violations(&source(file, text));
        assert!(v.is_empty(), "{file}: `{text}` flagged: {v:?}");
    }
    let long = format!(
        "fn f() {{}}\n#[cfg(test)]\nmod tests {{\n{}}}\n",
        "fn g() {}\n".repeat(500)
    );
    assert!(violations(&source("domain/x.rs", &long)).is_empty());
}
