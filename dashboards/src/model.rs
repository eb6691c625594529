//! The part of Grafana's dashboard JSON (schema version [`SCHEMA_VERSION`]) that Triad's
//! dashboards use, as serde types: what is written is what these types can say.

use serde::Serialize;
use serde_json::Value;

/// The dashboard schema version the JSON is written for: Grafana 10.4 and 11.x read it as is (a
/// newer Grafana migrates it on import).
pub const SCHEMA_VERSION: u64 = 39;

/// The datasource every panel, variable and annotation names: the `datasource` variable, so the
/// same JSON works against whatever Prometheus a site calls its own.
pub const DATASOURCE_UID: &str = "${datasource}";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub uid: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub timezone: String,
    pub schema_version: u64,
    pub version: u64,
    pub editable: bool,
    /// 1: a shared crosshair across the dashboard's graphs.
    pub graph_tooltip: u8,
    pub refresh: String,
    pub time: TimeRange,
    pub templating: Templating,
    pub annotations: Annotations,
    pub panels: Vec<Panel>,
    pub links: Vec<DashboardLink>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeRange {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Templating {
    pub list: Vec<Variable>,
}

/// A template variable: the datasource, or a query over label values.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// For `datasource` variables: the plugin (`prometheus`); for `query` ones: the PromQL
    /// function (`label_values(metric, label)`).
    pub query: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DatasourceRef>,
    pub refresh: u8,
    pub multi: bool,
    pub include_all: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_value: Option<String>,
    pub hide: u8,
    pub sort: u8,
    pub current: Value,
    pub options: Vec<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Annotations {
    pub list: Vec<Annotation>,
}

/// An annotation drawn from a Prometheus query on every graph of the dashboard.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotation {
    pub name: String,
    pub datasource: DatasourceRef,
    pub enable: bool,
    pub hide: bool,
    pub icon_color: String,
    pub expr: String,
    pub step: String,
    pub title_format: String,
    pub text_format: String,
    pub tag_keys: String,
    /// The series' value is the event's time in milliseconds (Triad exports last-transition
    /// timestamps), so the mark sits where the change happened, not where a sample was taken.
    pub use_value_for_time: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardLink {
    pub title: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub tags: Vec<String>,
    pub as_dropdown: bool,
    pub include_vars: bool,
    pub keep_time: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatasourceRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub uid: String,
}

impl DatasourceRef {
    /// The `datasource` variable's Prometheus.
    pub fn prometheus() -> Self {
        DatasourceRef { kind: "prometheus".into(), uid: DATASOURCE_UID.into() }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Panel {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub description: String,
    pub grid_pos: GridPos,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DatasourceRef>,
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_config: Option<FieldConfig>,
    pub options: Value,
    /// Rows only: folded or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapsed: Option<bool>,
    /// Rows only: the panels a folded row holds (always empty here: rows stay open).
    #[serde(skip_serializing_if = "Option::is_none", rename = "panels")]
    pub row_panels: Option<Vec<Panel>>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct GridPos {
    pub h: u32,
    pub w: u32,
    pub x: u32,
    pub y: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub ref_id: String,
    pub datasource: DatasourceRef,
    pub expr: String,
    pub legend_format: String,
    /// Table and stat panels read the latest value only.
    pub instant: bool,
    pub range: bool,
    pub format: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldConfig {
    pub defaults: FieldDefaults,
    pub overrides: Vec<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldDefaults {
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u32>,
    pub thresholds: Thresholds,
    pub mappings: Vec<Value>,
    pub color: Value,
    pub custom: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub mode: String,
    pub steps: Vec<ThresholdStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdStep {
    pub color: String,
    /// None: the base step (from minus infinity).
    pub value: Option<f64>,
}
