//! Offline checks of a dashboard's JSON, the generated ones and any other (a broken fixture must
//! fail them): the pinned schema version, unique panel ids, a title, a description and a unit on
//! every panel, the datasource a template variable, every `$variable` defined, every query
//! non-empty, every panel inside the grid. What they cannot check, that a query returns data, the
//! end-to-end test checks against a real Prometheus.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::model::{DATASOURCE_UID, SCHEMA_VERSION};

/// What Grafana itself defines in every dashboard.
const BUILTIN_VARIABLES: &[&str] = &[
    "__interval",
    "__interval_ms",
    "__rate_interval",
    "__range",
    "__range_s",
    "__range_ms",
    "__from",
    "__to",
    "__dashboard",
    "__name",
    "__org",
    "__user",
    "timeFilter",
];

/// The panel types of Grafana 10.4/11 core (a dashboard naming another needs a plugin installed).
const PANEL_TYPES: &[&str] = &[
    "row",
    "timeseries",
    "stat",
    "state-timeline",
    "status-history",
    "bargauge",
    "gauge",
    "table",
    "text",
    "barchart",
    "histogram",
    "heatmap",
    "piechart",
    "logs",
    "nodeGraph",
    "alertlist",
    "dashlist",
    "news",
    "geomap",
    "canvas",
    "xychart",
    "trend",
    "traces",
    "flamegraph",
];

/// The template variable types of schema version 39.
const VARIABLE_TYPES: &[&str] = &["query", "datasource", "custom", "constant", "interval", "textbox", "adhoc"];

/// A test of a JSON value's type (`Value::is_array` and the like).
type JsonType = fn(&Value) -> bool;

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `dashboard uid`, then `panel N "title"` where it applies.
    pub at: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

/// Every problem in one dashboard's JSON (empty: it passes).
pub fn check(dashboard: &Value) -> Vec<Problem> {
    let uid = dashboard.get("uid").and_then(Value::as_str).unwrap_or("(no uid)").to_string();
    let mut c = Checker { problems: Vec::new(), uid: uid.clone() };
    if uid == "(no uid)" || uid.is_empty() {
        c.at_board("the dashboard has no uid");
    }
    if !non_empty_str(dashboard.get("title")) {
        c.at_board("the dashboard has no title");
    }
    match dashboard.get("schemaVersion").and_then(Value::as_u64) {
        Some(SCHEMA_VERSION) => {}
        other => c.at_board(&format!("schemaVersion is {other:?}, not the pinned {SCHEMA_VERSION}")),
    }
    c.shape(dashboard);
    let defined = c.variables(dashboard);
    let mut ids = BTreeSet::new();
    let panels = dashboard.get("panels").and_then(Value::as_array).cloned().unwrap_or_default();
    if panels.is_empty() {
        c.at_board("the dashboard has no panels");
    }
    for p in &panels {
        c.panel(p, &mut ids, &defined);
    }
    for (i, a) in array(dashboard.pointer("/annotations/list")).iter().enumerate() {
        let at = format!("annotation {i}");
        c.datasource_is_variable(&at, a.get("datasource"));
        let expr = a.get("expr").and_then(Value::as_str).unwrap_or("");
        if expr.trim().is_empty() {
            c.push(&at, "has no query");
        }
        c.variables_defined(&at, expr, &defined);
    }
    c.problems
}

struct Checker {
    problems: Vec<Problem>,
    uid: String,
}

impl Checker {
    fn push(&mut self, at: &str, what: &str) {
        self.problems.push(Problem { at: format!("{} {at}", self.uid), what: what.into() });
    }

    fn at_board(&mut self, what: &str) {
        self.problems.push(Problem { at: self.uid.clone(), what: what.into() });
    }

    /// The top-level keys schema version 39 requires, with their JSON types.
    fn shape(&mut self, d: &Value) {
        let is = |ptr: &str, f: fn(&Value) -> bool| d.pointer(ptr).is_some_and(f);
        let required: [(&str, JsonType, &str); 7] = [
            ("/panels", Value::is_array, "an array"),
            ("/templating/list", Value::is_array, "an array"),
            ("/annotations/list", Value::is_array, "an array"),
            ("/time/from", Value::is_string, "a string"),
            ("/time/to", Value::is_string, "a string"),
            ("/tags", Value::is_array, "an array"),
            ("/editable", Value::is_boolean, "a boolean"),
        ];
        for (ptr, f, what) in required {
            if !is(ptr, f) {
                self.at_board(&format!("`{}` is missing or not {what}", &ptr[1..].replace('/', ".")));
            }
        }
    }

    /// The variables defined; the datasource one must be among them and be of type datasource
    /// for Prometheus.
    fn variables(&mut self, dashboard: &Value) -> BTreeSet<String> {
        let list = array(dashboard.pointer("/templating/list"));
        let mut names = BTreeSet::new();
        for v in &list {
            let Some(name) = v.get("name").and_then(Value::as_str) else {
                self.at_board("a template variable has no name");
                continue;
            };
            if !names.insert(name.to_string()) {
                self.at_board(&format!("template variable `{name}` is defined twice"));
            }
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
            if !VARIABLE_TYPES.contains(&kind) {
                self.at_board(&format!("template variable `{name}` has type `{kind}`, not one of {VARIABLE_TYPES:?}"));
            }
            if v.get("type").and_then(Value::as_str) == Some("query") {
                self.datasource_is_variable(&format!("variable `{name}`"), v.get("datasource"));
            }
        }
        let ds = list.iter().find(|v| v.get("name").and_then(Value::as_str) == Some("datasource"));
        match ds {
            Some(v)
                if v.get("type").and_then(Value::as_str) == Some("datasource")
                    && v.get("query").and_then(Value::as_str) == Some("prometheus") => {}
            _ => self.at_board("no template variable `datasource` of type datasource for prometheus"),
        }
        names
    }

    fn panel(&mut self, p: &Value, ids: &mut BTreeSet<u64>, defined: &BTreeSet<String>) {
        let title = p.get("title").and_then(Value::as_str).unwrap_or("");
        let id = p.get("id").and_then(Value::as_u64);
        let at = format!("panel {} \"{title}\"", id.map(|i| i.to_string()).unwrap_or("?".into()));
        match id {
            None => self.push(&at, "has no numeric id"),
            Some(id) if !ids.insert(id) => self.push(&at, &format!("id {id} is used by another panel")),
            Some(_) => {}
        }
        if title.trim().is_empty() {
            self.push(&at, "has no title");
        }
        self.grid(&at, p.get("gridPos"));
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "row" {
            for inner in array(p.get("panels")) {
                self.panel(&inner, ids, defined);
            }
            return;
        }
        if !PANEL_TYPES.contains(&kind) {
            self.push(&at, &format!("has type `{kind}`, not a core panel of Grafana 10.4/11"));
        }
        if !non_empty_str(p.get("description")) {
            self.push(&at, "has no description");
        }
        if !non_empty_str(p.pointer("/fieldConfig/defaults/unit")) {
            self.push(&at, "has no unit (fieldConfig.defaults.unit)");
        }
        self.datasource_is_variable(&at, p.get("datasource"));
        self.variables_defined(&at, title, defined);
        let targets = array(p.get("targets"));
        if targets.is_empty() {
            self.push(&at, "has no query");
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            let r = t.get("refId").and_then(Value::as_str).unwrap_or("");
            if r.is_empty() || !refs.insert(r.to_string()) {
                self.push(&at, &format!("query refId `{r}` is empty or repeated"));
            }
            let expr = t.get("expr").and_then(Value::as_str).unwrap_or("");
            if expr.trim().is_empty() {
                self.push(&at, &format!("query {r} is empty"));
            }
            self.datasource_is_variable(&format!("{at} query {r}"), t.get("datasource"));
            self.variables_defined(&format!("{at} query {r}"), expr, defined);
            let legend = t.get("legendFormat").and_then(Value::as_str).unwrap_or("");
            self.variables_defined(&format!("{at} legend {r}"), legend, defined);
        }
    }

    fn grid(&mut self, at: &str, pos: Option<&Value>) {
        let get = |k: &str| pos.and_then(|p| p.get(k)).and_then(Value::as_u64);
        match (get("x"), get("y"), get("w"), get("h")) {
            (Some(x), Some(_), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {}
            _ => self.push(at, "gridPos is missing or outside the 24-column grid"),
        }
    }

    fn datasource_is_variable(&mut self, at: &str, ds: Option<&Value>) {
        let uid = ds.and_then(|d| d.get("uid")).and_then(Value::as_str);
        if uid != Some(DATASOURCE_UID) {
            self.push(at, &format!("datasource is {uid:?}, not the `{DATASOURCE_UID}` variable"));
        }
    }

    fn variables_defined(&mut self, at: &str, text: &str, defined: &BTreeSet<String>) {
        for v in used_variables(text) {
            if !defined.contains(&v) && !BUILTIN_VARIABLES.contains(&v.as_str()) {
                self.push(at, &format!("uses `${v}`, which no template variable defines"));
            }
        }
    }
}

/// The variables `text` uses: `$name`, `${name}` and `${name:format}`, `[[name]]`.
pub fn used_variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let word = |from: usize| {
        let end =
            b[from..].iter().position(|c| !(c.is_ascii_alphanumeric() || *c == b'_')).map_or(b.len(), |n| from + n);
        (text[from..end].to_string(), end)
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            let from = if b[i + 1] == b'{' { i + 2 } else { i + 1 };
            let (name, end) = word(from);
            // `$1` is label_replace's capture group, not a variable.
            if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                out.insert(name);
            }
            i = end.max(i + 1);
        } else if b[i] == b'[' && b.get(i + 1) == Some(&b'[') {
            let (name, end) = word(i + 2);
            if !name.is_empty() && b.get(end) == Some(&b']') {
                out.insert(name);
            }
            i = end.max(i + 2);
        } else {
            i += 1;
        }
    }
    out
}

fn non_empty_str(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty())
}

fn array(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_found_in_every_spelling() {
        let used = used_variables(r#"rate(x{cluster="$cluster",l=~"${link:regex}"}[$__rate_interval]) [[old]] $1"#);
        let names: Vec<&str> = used.iter().map(String::as_str).collect();
        assert_eq!(names, vec!["__rate_interval", "cluster", "link", "old"]);
    }
}
