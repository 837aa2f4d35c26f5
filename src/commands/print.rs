//! Output shaped like kubectl's: the server's Tables as `kubectl get` prints
//! them, and rows padded into columns as kubectl's tab writer pads them.

use serde_json::Value;

use crate::kinds::Kind;

/// Tables as `kubectl get` prints them: upper-case headers, columns padded to
/// their widest cell and three spaces; the wide columns only when `wide`; a
/// NAMESPACE column first for `-A`; names as `kind/name` when several kinds
/// are shown (`prefix`).
pub fn tables(tables: &[Value], wide: bool, namespaces: bool, prefix: Option<&Kind>) -> String {
    let Some(first) = tables.first() else {
        return String::new();
    };
    let columns: Vec<(usize, String)> = first["columnDefinitions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, c)| (i, c["name"].as_str().unwrap_or("").to_uppercase()))
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for table in tables {
        for row in table["rows"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let mut cells: Vec<String> = columns
                .iter()
                .map(|(i, name)| {
                    let cell = cell(&row["cells"][*i]);
                    match prefix {
                        Some(kind) if name == "NAME" => kind.qualified(&cell),
                        _ => cell,
                    }
                })
                .collect();
            if namespaces {
                let ns = row["object"]["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("");
                cells.insert(0, ns.to_owned());
            }
            rows.push(cells);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut headers: Vec<String> = columns.into_iter().map(|(_, name)| name).collect();
    if namespaces {
        headers.insert(0, "NAMESPACE".into());
    }
    aligned(std::iter::once(headers).chain(rows))
}

/// A cell's text: a string as it is, `<none>` for nothing.
pub fn cell(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

/// Rows padded into columns three spaces apart, as kubectl's tab writer does.
pub fn aligned(rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (c, cell) in row.iter().enumerate() {
            text.push_str(cell);
            if c < last {
                let pad = widths[c] - cell.chars().count() + 3;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push('\n');
    }
    text
}

/// A size in mebibytes: `1.5 MiB`.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_print_as_kubectl_prints_them() {
        let table = json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "Ready", "priority": 0},
                {"name": "IP", "priority": 1}],
            "rows": [
                {"cells": ["web-1", "1/1", "127.64.0.2"],
                 "object": {"metadata": {"namespace": "shop"}}},
                {"cells": ["db", "0/1", null], "object": {"metadata": {"namespace": "a"}}}]
        });
        let narrow = tables(std::slice::from_ref(&table), false, false, None);
        assert_eq!(narrow, "NAME    READY\nweb-1   1/1\ndb      0/1\n");
        let wide = tables(std::slice::from_ref(&table), true, true, None);
        assert_eq!(
            wide,
            "NAMESPACE   NAME    READY   IP\n\
             shop        web-1   1/1     127.64.0.2\n\
             a           db      0/1     <none>\n"
        );
        assert_eq!(tables(&[], false, false, None), "");
        let pods = crate::kinds::tests::kind("", "pods", "Pod", &[], "Namespaced");
        let prefixed = tables(std::slice::from_ref(&table), false, false, Some(&pods));
        assert!(
            prefixed.starts_with("NAME        READY\npod/web-1   1/1\n"),
            "{prefixed}"
        );
    }
}
