//! A method's result as a table for people.

use serde_json::Value;

use super::View;

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            if items.is_empty() {
                return "-".into();
            }
            items
                .iter()
                .map(|i| match i {
                    // {"lun": 0, "volume": "a"} → "0:a"
                    Value::Object(o) if o.len() == 2 => {
                        o.values().map(cell).collect::<Vec<_>>().join(":")
                    }
                    other => cell(other),
                })
                .collect::<Vec<_>>()
                .join(",")
        }
        other => other.to_string(),
    }
}

pub(super) fn render(view: &View, result: &Value) -> String {
    match view {
        View::Text(field) => result
            .get(*field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        View::Status => {
            let mut out = String::new();
            if let Value::Object(o) = result {
                for (k, v) in o {
                    out += &format!("{k:<18} {}\n", cell(v));
                }
            }
            out
        }
        View::Changes => {
            let mut out = String::new();
            for c in result
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out += &format!("{}\n", cell(c));
            }
            for (k, label) in [("lun", "LUN"), ("nsid", "NSID")] {
                if let Some(n) = result.get(k) {
                    out += &format!("{label} {n}\n");
                }
            }
            for c in result
                .get("needs_restart")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out += &format!("needs a restart: {}\n", cell(c));
            }
            if out.is_empty() {
                out = match result.get("disconnected") {
                    Some(d) => format!("disconnected {d}\n"),
                    None => "no change\n".into(),
                };
            }
            out
        }
        View::Table(columns) => {
            let rows: Vec<Vec<String>> = result
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            columns
                                .iter()
                                .map(|c| cell(r.get(*c).unwrap_or(&Value::Null)))
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    rows.iter()
                        .map(|r| r[i].len())
                        .chain([c.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<String>| {
                let mut l = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ");
                l.truncate(l.trim_end().len());
                l + "\n"
            };
            let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
            for r in rows {
                out += &line(r);
            }
            out
        }
    }
}
