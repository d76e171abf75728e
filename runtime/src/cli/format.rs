//! Output like docker's: aligned tables, human sizes and ages, and `--format` (`table`, `json`,
//! or a Go-template subset: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`).

use std::fmt::Write as _;

use serde_json::Value;

/// How `--format` asked the rows to be printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Template(String),
}

impl Format {
    pub fn parse(s: Option<&str>) -> Format {
        match s {
            None | Some("") | Some("table") => Format::Table,
            Some("json") => Format::Json,
            Some(t) => Format::Template(t.strip_prefix("table ").unwrap_or(t).to_string()),
        }
    }
}

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("template {template:?}: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

/// `--format json`: one JSON object a line.
pub fn json_lines(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// `--format TEMPLATE`: one rendering a line.
pub fn template_lines(template: &str, rows: &[Value]) -> Result<String, TemplateError> {
    let mut out = String::new();
    for r in rows {
        out.push_str(&render(template, r)?);
        out.push('\n');
    }
    Ok(out)
}

/// Renders `template` against `value` (docker's Go templates, the common subset).
pub fn render(template: &str, value: &Value) -> Result<String, TemplateError> {
    let err = |reason: String| TemplateError {
        template: template.to_string(),
        reason,
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&unescape(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| err("unclosed {{".to_string()))?;
        let action = after[..end].trim();
        let (as_json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        let field = lookup(value, path).ok_or_else(|| err(format!("no field {path:?}")))?;
        if as_json {
            out.push_str(&field.to_string());
        } else {
            out.push_str(&plain(field));
        }
        rest = &after[end + 2..];
    }
    out.push_str(&unescape(rest));
    Ok(out)
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path == "." {
        return Some(value);
    }
    let path = path.strip_prefix('.')?;
    path.split('.')
        .try_fold(value, |v, key| v.as_object().and_then(|m| m.get(key)))
}

/// Go's default printing: strings bare, lists as `[a b]`, maps as `map[k:v]`, null as `<nil>`.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(plain).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", plain(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// Columns separated by at least three spaces, like docker's tabwriter.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < widths.len() {
                let _ = write!(text, "{cell:<w$}   ", w = widths[i]);
            } else {
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

/// Sizes as docker prints them: decimal units, three significant digits (`4.26MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let mut text = significant3(value);
    if text == "1000" && unit + 1 < UNITS.len() {
        unit += 1;
        text = "1".into();
    }
    format!("{text}{}", UNITS[unit])
}

/// `%.3g` for values in [0, 1000).
fn significant3(v: f64) -> String {
    let decimals = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s.contains('.') || s.len() <= 3 {
        s
    } else {
        // 999.6 rounds to "1000": the caller moves to the next unit.
        "1000".into()
    }
}

/// Ages as docker prints them (`About a minute`, `3 days`, `2 weeks`).
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let minutes = s / 60;
    let hours = minutes / 60;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// `2 weeks ago` for an RFC 3339 time, or `N/A` when absent or unreadable.
pub fn since(created: Option<&str>) -> String {
    match created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) {
        Some(t) => {
            let age = chrono::Utc::now().signed_duration_since(t);
            format!("{} ago", human_duration(age.num_seconds()))
        }
        None => "N/A".into(),
    }
}

/// Docker's `CreatedAt` form: `2024-01-02 03:04:05 +0000 UTC`.
pub fn created_at(created: Option<&str>) -> String {
    match created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) {
        Some(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S +0000 UTC")
            .to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_match_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(42_612_345), "42.6MB");
        assert_eq!(human_size(426_123_456), "426MB");
        assert_eq!(human_size(999_600), "1MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn durations_match_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(60 * 5), "5 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3600 * 47), "47 hours");
        assert_eq!(human_duration(86400 * 3), "3 days");
        assert_eq!(human_duration(86400 * 21), "3 weeks");
        assert_eq!(human_duration(86400 * 90), "3 months");
        assert_eq!(human_duration(86400 * 800), "2 years");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["REPOSITORY", "TAG", "SIZE"],
            &[vec!["busybox".into(), "latest".into(), "4MB".into()]],
        );
        assert_eq!(t, "REPOSITORY   TAG      SIZE\nbusybox      latest   4MB\n");
    }

    #[test]
    fn templates_render_fields_and_json() {
        let v = json!({"ID": "abc", "Config": {"Cmd": ["sh", "-c"]}, "N": 3});
        assert_eq!(render("{{.ID}}\\t{{.N}}", &v).unwrap(), "abc\t3");
        assert_eq!(render("{{.Config.Cmd}}", &v).unwrap(), "[sh -c]");
        assert_eq!(
            render("{{json .Config.Cmd}}", &v).unwrap(),
            r#"["sh","-c"]"#
        );
        assert!(render("{{.Nope}}", &v)
            .unwrap_err()
            .to_string()
            .contains("Nope"));
        assert!(render("{{.ID", &v).is_err());
        assert_eq!(
            Format::parse(Some("table {{.ID}}")),
            Format::Template("{{.ID}}".into())
        );
    }
}
