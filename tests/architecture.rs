//! ARCHITECTURE.md's "may use" table, enforced over the module tree of `src/`.
//!
//! Every module of `src/` (a file, or a folder's `mod.rs`) belongs to the row of the table that
//! names it or its nearest ancestor. The test reads every path each module uses (`use` trees, and
//! `crate::…`, `super::…`, `self::…` and child-module paths in code; `#[cfg(test)]` items aside) and
//! fails
//! - on an edge from one row to another that the first row's "may use" cell does not name, and
//! - on any circle of imports between the modules of one folder (siblings), at every level.
//!
//! So an arrow that runs back up cannot land without the table changing first, in review. The
//! checker proves itself on a small crate it writes (`the_checker_finds_a_circle_and_a_forbidden_edge`).
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

fn show(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_owned()
    } else {
        path.join("::")
    }
}

/// The modules of a crate whose root is `src/lib.rs`, by path, with their files.
fn modules(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut parts: ModPath =
                relative.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|last| last == "mod") {
                parts.pop();
            }
            if parts == ["lib"] {
                parts.clear();
            }
            found.insert(parts, path);
        }
    }
    found
}

/// The source with comments, string and character literals blanked out (lifetimes kept).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// The code without its `#[cfg(test)]` items (test modules and test-only helpers).
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let bytes = item.as_bytes();
        let mut i = "#[cfg(test)]".len();
        while i < bytes.len() && bytes[i] != b'{' && bytes[i] != b';' {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            let mut depth = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        rest = &item[(i + 1).min(item.len())..];
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Semi,
    Other(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // A raw identifier (r#type) is the identifier.
            let word = word.strip_prefix("r#").map(str::to_owned).unwrap_or(word);
            out.push(Token::Ident(word));
            continue;
        }
        match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push(Token::PathSep);
                i += 2;
                continue;
            }
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '*' => out.push(Token::Star),
            ';' => out.push(Token::Semi),
            c if c.is_whitespace() => {}
            c => out.push(Token::Other(c)),
        }
        i += 1;
    }
    out
}

/// The leaf paths of the use tree starting at `tokens[*i]`, each prefixed by `prefix`.
fn use_tree(tokens: &[Token], i: &mut usize, prefix: ModPath, out: &mut Vec<ModPath>) {
    let mut path = prefix;
    loop {
        match tokens.get(*i) {
            Some(Token::Ident(word)) if word == "as" => {
                *i += 2;
                out.push(path);
                return;
            }
            Some(Token::Ident(word)) => {
                if word != "self" || path.is_empty() {
                    path.push(word.clone());
                }
                *i += 1;
                if tokens.get(*i) == Some(&Token::PathSep) {
                    *i += 1;
                    continue;
                }
                if let Some(Token::Ident(next)) = tokens.get(*i) {
                    if next == "as" {
                        *i += 2;
                    }
                }
                out.push(path);
                return;
            }
            Some(Token::Star) => {
                *i += 1;
                out.push(path);
                return;
            }
            Some(Token::Open) => {
                *i += 1;
                loop {
                    match tokens.get(*i) {
                        Some(Token::Close) => {
                            *i += 1;
                            return;
                        }
                        Some(Token::Comma) => *i += 1,
                        None => return,
                        _ => use_tree(tokens, i, path.clone(), out),
                    }
                }
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// Every path a module's code names, as written (first segment `crate`, `super`, `self`, a child
/// module's name, or the library's own name from the binary).
fn paths_used(code: &str, children: &BTreeSet<String>) -> Vec<ModPath> {
    let tokens = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    let starts = |word: &str| matches!(word, "crate" | "super" | "self" | "appkeys") || children.contains(word);
    while i < tokens.len() {
        // `a::b`, `x.b` and `pub(in crate::b)` (a visibility, not a use) do not start a path at `b`.
        let after_sep = i > 0
            && (matches!(tokens[i - 1], Token::PathSep | Token::Other('.'))
                || tokens[i - 1] == Token::Ident("in".to_owned()));
        match &tokens[i] {
            Token::Ident(word) if word == "use" && !after_sep => {
                i += 1;
                let mut leaves = Vec::new();
                use_tree(&tokens, &mut i, Vec::new(), &mut leaves);
                out.extend(leaves.into_iter().filter(|p| p.first().is_some_and(|w| starts(w))));
            }
            Token::Ident(word) if !after_sep && starts(word) && tokens.get(i + 1) == Some(&Token::PathSep) => {
                let mut path = vec![word.clone()];
                i += 2;
                while let Some(Token::Ident(next)) = tokens.get(i) {
                    path.push(next.clone());
                    if tokens.get(i + 1) == Some(&Token::PathSep) {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                }
                out.push(path);
            }
            _ => i += 1,
        }
    }
    out
}

/// The module a written path lands in: made absolute from `from`, then cut to the longest prefix
/// that is a module.
fn resolve(from: &[String], written: &[String], known: &BTreeMap<ModPath, PathBuf>) -> Option<ModPath> {
    let mut absolute: ModPath = match written.first().map(String::as_str) {
        Some("crate" | "appkeys") => Vec::new(),
        Some("self") => from.to_vec(),
        Some("super") => from[..from.len().saturating_sub(1)].to_vec(),
        Some(_) => from.to_vec(),
        None => return None,
    };
    let mut rest = match written.first().map(String::as_str) {
        Some("crate" | "appkeys" | "self" | "super") => &written[1..],
        _ => written,
    };
    while rest.first().is_some_and(|w| w == "super") {
        absolute.pop();
        rest = &rest[1..];
    }
    absolute.extend(rest.iter().cloned());
    (0..=absolute.len()).rev().map(|n| absolute[..n].to_vec()).find(|p| known.contains_key(p))
}

/// Every edge between modules of the crate under `src`, with the path that makes it.
fn edges(src: &Path) -> (BTreeMap<ModPath, PathBuf>, BTreeMap<(ModPath, ModPath), String>) {
    let known = modules(src);
    let mut found = BTreeMap::new();
    for (module, file) in &known {
        let source = fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let code = without_test_items(&code_only(&source));
        // The binary (`main.rs`) names the library by its crate name; it has no children.
        let children: BTreeSet<String> = known
            .keys()
            .filter(|p| p.len() == module.len() + 1 && p.starts_with(module) && module != &["main"])
            .map(|p| p[p.len() - 1].clone())
            .collect();
        for written in paths_used(&code, &children) {
            let from: &[String] = if module == &["main"] { &[] } else { module };
            if let Some(target) = resolve(from, &written, &known) {
                if &target != module && !(module == &["main"] && target.is_empty()) {
                    found.entry((module.clone(), target)).or_insert_with(|| written.join("::"));
                }
            }
        }
    }
    (known, found)
}

/// Circles of imports between sibling modules: each edge is lifted to the children of the two
/// modules' nearest common ancestor (an edge to an ancestor or a descendant is not a sibling edge).
fn circles(edges: &BTreeMap<(ModPath, ModPath), String>) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue;
        }
        graph.entry(from[..=common].to_vec()).or_default().insert(to[..=common].to_vec());
    }
    // Tarjan's strongly connected components; any with more than one module is a circle.
    struct State<'g> {
        graph: &'g BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on_stack: BTreeSet<ModPath>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit(s: &mut State<'_>, v: &ModPath) {
        s.index.insert(v.clone(), s.next);
        s.low.insert(v.clone(), s.next);
        s.next += 1;
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v.clone(), low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = &w == v;
                component.push(show(&w));
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// One row of the "may use" table: the modules it names, and what they may use (`None`: everything).
#[derive(Debug)]
struct Row {
    names: Vec<ModPath>,
    may_use: Option<Vec<ModPath>>,
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn module_name(raw: &str) -> ModPath {
    let raw = raw.trim().trim_end_matches('/').trim_end_matches(".rs");
    if raw == "lib" {
        return Vec::new();
    }
    let mut path: ModPath = raw.split(['/', ':']).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The rows of the table whose header is `| module | what lives there | may use |`.
fn table(architecture: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in architecture.lines() {
        let line = line.trim();
        if line.starts_with("| module |") && line.ends_with("| may use |") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            continue;
        }
        let (first, last) = (cells[0], cells[cells.len() - 1]);
        let names = backticked(first).iter().map(|n| module_name(n)).collect();
        let may_use = match last {
            "everything" => None,
            _ => Some(backticked(last).iter().map(|n| module_name(n)).collect()),
        };
        rows.push(Row { names, may_use });
    }
    rows
}

/// The row a module belongs to: the one naming it or its nearest ancestor.
fn row_of<'r>(rows: &'r [Row], module: &[String]) -> Option<(usize, &'r Row)> {
    rows.iter()
        .enumerate()
        .filter_map(|(i, row)| {
            row.names.iter().filter(|n| module.starts_with(n)).map(|n| n.len()).max().map(|depth| (depth, i, row))
        })
        .max_by_key(|(depth, _, _)| *depth)
        .map(|(_, i, row)| (i, row))
}

/// What is wrong with the crate under `src` against `architecture`'s table, one line each.
fn violations(src: &Path, architecture: &str) -> Vec<String> {
    let rows = table(architecture);
    let mut wrong = Vec::new();
    if rows.is_empty() {
        wrong.push("ARCHITECTURE.md has no `| module | what lives there | may use |` table".to_owned());
        return wrong;
    }
    let (known, edges) = edges(src);
    for module in known.keys() {
        if row_of(&rows, module).is_none() {
            wrong.push(format!("module {} is in no row of the table", show(module)));
        }
    }
    for ((from, to), written) in &edges {
        let (Some((from_row, row)), Some((to_row, _))) = (row_of(&rows, from), row_of(&rows, to)) else {
            continue;
        };
        if from_row == to_row {
            continue;
        }
        let Some(allowed) = &row.may_use else {
            continue;
        };
        if !allowed.iter().any(|a| to.starts_with(a)) {
            wrong.push(format!("{} uses {} (`{written}`), which its row does not allow", show(from), show(to)));
        }
    }
    for circle in circles(&edges) {
        wrong.push(format!("import circle: {}", circle.join(" ⇄ ")));
    }
    wrong
}

#[test]
fn the_modules_use_only_what_architecture_md_allows_and_import_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let wrong = violations(&root.join("src"), &architecture);
    if std::env::var_os("APPKEYS_PRINT_EDGES").is_some() {
        for ((from, to), written) in edges(&root.join("src")).1 {
            println!("{} -> {}  ({written})", show(&from), show(&to));
        }
    }
    assert!(wrong.is_empty(), "ARCHITECTURE.md's rules are broken:\n  {}", wrong.join("\n  "));
}

#[test]
fn the_checker_finds_a_circle_and_a_forbidden_edge() {
    let dir = std::env::temp_dir().join(format!("appkeys-architecture-{}", std::process::id()));
    let src = dir.join("src");
    fs::create_dir_all(src.join("rooms")).expect("fixture dirs");
    let write = |path: &str, text: &str| fs::write(src.join(path), text).expect("fixture file");
    write("lib.rs", "pub mod leaf;\npub mod rooms;\npub mod top;\n");
    write("leaf.rs", "// use crate::top::X; is a comment\npub struct L; const S: &str = \"crate::top::x\";\n");
    write("top.rs", "use crate::rooms::a::A;\npub struct T;\n");
    write("rooms/mod.rs", "pub mod a;\npub mod b;\n");
    write("rooms/a.rs", "use super::b::{self, B};\npub struct A;\n");
    write(
        "rooms/b.rs",
        "pub struct B(crate::rooms::a::A, crate::leaf::L);\n#[cfg(test)]\nmod tests { use crate::top::T; }\n",
    );
    let table = "| module | what lives there | may use |\n|---|---|---|\n| `lib.rs` | root | everything |\n\
                 | `leaf.rs` | a leaf | — |\n| `top.rs` | top | `rooms` |\n| `rooms/` | rooms | — |\n";
    let wrong = violations(&src, table);
    fs::remove_dir_all(&dir).ok();
    assert!(wrong.iter().any(|w| w == "import circle: rooms::a ⇄ rooms::b"), "the circle is found: {wrong:?}");
    assert!(
        wrong.iter().any(|w| w.starts_with("rooms::b uses leaf (`crate::leaf::L`)")),
        "the forbidden edge is found: {wrong:?}"
    );
    assert_eq!(wrong.len(), 2, "comments, strings, test items and allowed edges are not edges: {wrong:?}");
}

/// The documents (`*.md`) that the comments of `src/` cite, each with the heading it names if any
/// (`docs/reference.md: "Errors"`), and the file it is cited in.
fn cited_documents(src: &Path) -> Vec<(String, Option<String>, PathBuf)> {
    let mut found = Vec::new();
    for file in modules(src).into_values() {
        let source = fs::read_to_string(&file).expect("a source file");
        for line in source.lines().map(str::trim_start).filter(|l| l.starts_with("//")) {
            // `README: "…"` names the README too.
            let line = line.replace("README: \"", "README.md: \"");
            let mut rest = line.as_str();
            while let Some(at) = rest.find(".md") {
                let before = &rest[..at];
                let start = before
                    .rfind(|c: char| !(c.is_alphanumeric() || matches!(c, '/' | '_' | '-' | '.')))
                    .map_or(0, |i| i + 1);
                let document = format!("{}.md", &before[start..]);
                rest = &rest[at + 3..];
                let heading =
                    rest.strip_prefix(": \"").and_then(|h| h.split_once('"')).map(|(heading, _)| heading.to_owned());
                found.push((document, heading, file.clone()));
            }
        }
    }
    found
}

#[test]
fn every_document_a_module_comment_cites_exists_with_the_heading_it_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cited = cited_documents(&root.join("src"));
    assert!(cited.len() >= 5, "module comments cite documents: {cited:?}");
    let mut wrong = Vec::new();
    for (document, heading, file) in cited {
        let Ok(text) = fs::read_to_string(root.join(&document)) else {
            wrong.push(format!("{} cites {document}, which does not exist", file.display()));
            continue;
        };
        if let Some(heading) = heading {
            let headings = text.lines().filter_map(|l| l.strip_prefix('#')).map(|l| l.trim_start_matches('#').trim());
            if !headings.clone().any(|h| h.starts_with(&heading)) {
                wrong.push(format!("{} cites {document}: \"{heading}\", which has no such heading", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
