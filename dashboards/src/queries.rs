//! Every query the dashboards run, ready to send to a Prometheus: the end-to-end test runs each
//! against a real one scraping a demo and fails on any that returns nothing.

use serde_json::Value;

/// Role changes, as the annotation on every dashboard draws them: the controllers' last
/// role change per cluster and kind, in milliseconds (Grafana's "series value as timestamp").
pub const ROLE_CHANGE_ANNOTATION: &str =
    "max by (cluster, kind) (triad_db_last_role_change_timestamp_seconds) * 1000 > 0";

/// Fences: when an agent last stopped its primary to honour the lease.
pub const FENCE_ANNOTATION: &str = "max by (name, site) (triad_agent_last_fence_timestamp_seconds) * 1000 > 0";

/// One query of one panel (or annotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub dashboard: String,
    /// The panel's title, or `annotation NAME`.
    pub panel: String,
    pub ref_id: String,
    /// As written in the dashboard, variables unexpanded.
    pub expr: String,
    /// The legend (`{{label}}` placeholders) and the panel's unit.
    pub legend: String,
    pub unit: String,
}

impl Query {
    /// The query with its variables given values, as Grafana would send it: `$cluster` and the
    /// like from `values`; `$__rate_interval` and `$__interval` as `rate_window`; `$__range` as
    /// `range`. An unknown variable is left as it is (and Prometheus refuses the query).
    pub fn expand(&self, values: &[(&str, &str)], rate_window: &str, range: &str) -> String {
        let mut out = self.expr.clone();
        let builtins = [("__rate_interval", rate_window), ("__interval", rate_window), ("__range", range)];
        for (name, value) in values.iter().copied().chain(builtins) {
            for pattern in [format!("${{{name}:regex}}"), format!("${{{name}}}"), format!("${name}")] {
                out = replace_word(&out, &pattern, value);
            }
        }
        out
    }
}

/// Replaces `pattern` by `value` where what follows is not a name character (so `$cluster` does
/// not eat into `$clusters`).
fn replace_word(text: &str, pattern: &str, value: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(pattern) {
        let after = &rest[i + pattern.len()..];
        let boundary = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        out.push_str(if boundary { value } else { pattern });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Every panel query and annotation query in a dashboard's JSON.
pub fn of(dashboard: &Value) -> Vec<Query> {
    let uid = dashboard.get("uid").and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = Vec::new();
    let mut panels: Vec<Value> = dashboard.get("panels").and_then(Value::as_array).cloned().unwrap_or_default();
    while let Some(p) = panels.pop() {
        if let Some(inner) = p.get("panels").and_then(Value::as_array) {
            panels.extend(inner.iter().cloned());
        }
        let title = p.get("title").and_then(Value::as_str).unwrap_or("").to_string();
        let unit = p.pointer("/fieldConfig/defaults/unit").and_then(Value::as_str).unwrap_or("").to_string();
        for t in p.get("targets").and_then(Value::as_array).into_iter().flatten() {
            out.push(Query {
                dashboard: uid.clone(),
                panel: title.clone(),
                ref_id: t.get("refId").and_then(Value::as_str).unwrap_or("").into(),
                expr: t.get("expr").and_then(Value::as_str).unwrap_or("").into(),
                legend: t.get("legendFormat").and_then(Value::as_str).unwrap_or("").into(),
                unit: unit.clone(),
            });
        }
    }
    out.reverse();
    for a in dashboard.pointer("/annotations/list").and_then(Value::as_array).into_iter().flatten() {
        out.push(Query {
            dashboard: uid.clone(),
            panel: format!("annotation {}", a.get("name").and_then(Value::as_str).unwrap_or("")),
            ref_id: "annotation".into(),
            expr: a.get("expr").and_then(Value::as_str).unwrap_or("").into(),
            legend: a.get("titleFormat").and_then(Value::as_str).unwrap_or("").into(),
            unit: "ms".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_as_grafana_sends_them() {
        let q = Query {
            dashboard: "d".into(),
            panel: "p".into(),
            ref_id: "A".into(),
            expr: r#"rate(x{cluster="$cluster",c2="$clusters",l=~"${link:regex}"}[$__rate_interval])"#.into(),
            legend: String::new(),
            unit: "s".into(),
        };
        let e = q.expand(&[("cluster", "customs"), ("link", ".*")], "1m", "1h");
        assert_eq!(e, r#"rate(x{cluster="customs",c2="$clusters",l=~".*"}[1m])"#);
    }
}
