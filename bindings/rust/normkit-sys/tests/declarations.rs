//! Every function of normkit.h is declared in src/lib.rs with as many
//! parameters, and every integer #define NK_* is a `pub const` of the same value.
use std::collections::HashMap;
use std::path::PathBuf;

fn strip_c_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    out.push_str(rest);
    out.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

fn params(list: &str) -> usize {
    let list = list.trim();
    if list.is_empty() || list == "void" {
        0
    } else {
        list.split(',').filter(|p| !p.trim().is_empty()).count()
    }
}

/// name -> parameter count of each `nk_name(...)` after `marker` in `text`.
fn functions(text: &str, marker: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for chunk in text.split(marker).skip(1) {
        let decl = chunk.split(';').next().unwrap();
        let open = match decl.find('(') {
            Some(i) => i,
            None => continue, // e.g. `#define NK_API`
        };
        let chunk = decl;
        let name = chunk[..open].split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).last().unwrap();
        if !name.starts_with("nk_") {
            continue;
        }
        let close = open + chunk[open..].find(')').unwrap();
        out.insert(name.to_string(), params(&chunk[open + 1..close]));
    }
    out
}

#[test]
fn every_header_function_and_constant_is_declared() {
    let header = std::fs::read_to_string(PathBuf::from(env!("NORMKIT_INCLUDE_DIR")).join("normkit.h")).unwrap();
    let header = strip_c_comments(&header);
    let rust = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let c_fns = functions(&header, "NK_API");
    let rs_fns = functions(&rust, "pub fn ");
    assert!(c_fns.len() > 60, "parsed {} functions from normkit.h", c_fns.len());
    let mut problems = vec![];
    for (name, n) in &c_fns {
        match rs_fns.get(name) {
            None => problems.push(format!("{name} is not declared")),
            Some(m) if m != n => problems.push(format!("{name}: {n} parameters in C, {m} declared")),
            _ => {}
        }
    }
    let mut constants = 0;
    for line in header.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() != 3 || w[0] != "#define" || !w[1].starts_with("NK_") {
            continue;
        }
        let value = match w[2].parse::<i64>() {
            Ok(v) => v,
            Err(_) => continue,
        };
        constants += 1;
        let decl = format!("pub const {}:", w[1]);
        let rs_value = rust.find(&decl).map(|i| {
            let rest = &rust[i..];
            rest[rest.find('=').unwrap() + 1..rest.find(';').unwrap()].trim().parse::<i64>()
        });
        match rs_value {
            None => problems.push(format!("{} is not declared", w[1])),
            Some(Ok(v)) if v == value => {}
            Some(v) => problems.push(format!("{} = {value} in C, {v:?} declared", w[1])),
        }
    }
    assert!(constants >= 25, "parsed {constants} constants from normkit.h");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
