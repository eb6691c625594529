//! A small builder over [`crate::model`]: a dashboard is a list of rows and panels laid out left
//! to right on Grafana's 24-column grid, each panel a kind, a title, a description, a unit and
//! its queries; ids, positions, the datasource and the annotations are filled in here, once.

use serde_json::{json, Value};

use crate::model::*;

/// Grafana's grid is 24 columns wide.
const GRID_WIDTH: u32 = 24;

/// The panel kinds Triad's dashboards use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TimeSeries,
    Stat,
    StateTimeline,
    BarGauge,
}

impl Kind {
    fn plugin(self) -> &'static str {
        match self {
            Kind::TimeSeries => "timeseries",
            Kind::Stat => "stat",
            Kind::StateTimeline => "state-timeline",
            Kind::BarGauge => "bargauge",
        }
    }
}

/// A panel before it is placed.
#[derive(Debug, Clone)]
pub struct PanelSpec {
    kind: Kind,
    title: String,
    description: String,
    unit: String,
    w: u32,
    h: u32,
    queries: Vec<(String, String)>,
    mappings: Vec<(String, String, String)>,
    thresholds: Vec<(f64, String)>,
    base: &'static str,
    min: Option<f64>,
    max: Option<f64>,
    text_mode: &'static str,
}

fn spec(kind: Kind, title: &str, description: &str, unit: &str, w: u32, h: u32) -> PanelSpec {
    PanelSpec {
        kind,
        title: title.into(),
        description: description.into(),
        unit: unit.into(),
        w,
        h,
        queries: Vec::new(),
        mappings: Vec::new(),
        thresholds: Vec::new(),
        base: "green",
        min: None,
        max: None,
        text_mode: "auto",
    }
}

/// A graph over time.
pub fn timeseries(title: &str, description: &str, unit: &str) -> PanelSpec {
    spec(Kind::TimeSeries, title, description, unit, 12, 8)
}

/// One big number (or name) per series: the latest value.
pub fn stat(title: &str, description: &str, unit: &str) -> PanelSpec {
    spec(Kind::Stat, title, description, unit, 4, 4)
}

/// A band per series, coloured by the state its value maps to.
pub fn timeline(title: &str, description: &str, unit: &str) -> PanelSpec {
    spec(Kind::StateTimeline, title, description, unit, 12, 6)
}

/// Horizontal bars, one per series: the latest value.
pub fn bars(title: &str, description: &str, unit: &str) -> PanelSpec {
    spec(Kind::BarGauge, title, description, unit, 6, 6)
}

impl PanelSpec {
    /// A query and its legend (`{{label}}` placeholders).
    pub fn q(mut self, expr: &str, legend: &str) -> Self {
        self.queries.push((expr.into(), legend.into()));
        self
    }

    pub fn size(mut self, w: u32, h: u32) -> Self {
        (self.w, self.h) = (w, h);
        self
    }

    /// Shows `value` as `text` in `color`.
    pub fn map(mut self, value: &str, text: &str, color: &str) -> Self {
        self.mappings.push((value.into(), text.into(), color.into()));
        self
    }

    /// The colour below the first threshold (default green).
    pub fn base(mut self, color: &'static str) -> Self {
        self.base = color;
        self
    }

    /// From `value` up, the colour is `color`.
    pub fn threshold(mut self, value: f64, color: &str) -> Self {
        self.thresholds.push((value, color.into()));
        self
    }

    pub fn range(mut self, min: f64, max: f64) -> Self {
        (self.min, self.max) = (Some(min), Some(max));
        self
    }

    /// Stat panels: show the series' name (its legend) rather than its value.
    pub fn show_name(self) -> Self {
        self.text_mode("name")
    }

    /// Stat panels: what each series shows (`auto`, `value`, `name`, `value_and_name`).
    pub fn text_mode(mut self, mode: &'static str) -> Self {
        self.text_mode = mode;
        self
    }

    fn options(&self) -> Value {
        let legend = |mode: &str| json!({"displayMode": mode, "placement": "bottom", "showLegend": true});
        let reduce = json!({"calcs": ["lastNotNull"], "fields": "", "values": false});
        match self.kind {
            Kind::TimeSeries => json!({
                "legend": {"displayMode": "table", "placement": "bottom", "showLegend": true, "calcs": ["lastNotNull", "max"]},
                "tooltip": {"mode": "multi", "sort": "desc"}
            }),
            Kind::Stat => json!({
                "reduceOptions": reduce, "colorMode": "background", "graphMode": "none",
                "justifyMode": "auto", "orientation": "auto", "textMode": self.text_mode
            }),
            Kind::StateTimeline => json!({
                "showValue": "auto", "mergeValues": true, "alignValue": "left", "rowHeight": 0.9,
                "legend": legend("list"), "tooltip": {"mode": "single", "sort": "none"}
            }),
            Kind::BarGauge => json!({
                "displayMode": "basic", "orientation": "horizontal", "reduceOptions": reduce,
                "showUnfilled": true, "minVizHeight": 10, "minVizWidth": 0, "valueMode": "color"
            }),
        }
    }

    fn field_config(&self) -> FieldConfig {
        let mappings = if self.mappings.is_empty() {
            Vec::new()
        } else {
            let options: serde_json::Map<String, Value> = self
                .mappings
                .iter()
                .enumerate()
                .map(|(i, (v, text, color))| (v.clone(), json!({"text": text, "color": color, "index": i})))
                .collect();
            vec![json!({"type": "value", "options": options})]
        };
        let mut steps = vec![ThresholdStep { color: self.base.into(), value: None }];
        steps.extend(self.thresholds.iter().map(|(v, c)| ThresholdStep { color: c.clone(), value: Some(*v) }));
        let (color, custom) = match self.kind {
            Kind::TimeSeries => (
                json!({"mode": "palette-classic"}),
                json!({"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": false}),
            ),
            Kind::StateTimeline => (json!({"mode": "thresholds"}), json!({"lineWidth": 0, "fillOpacity": 80})),
            Kind::Stat | Kind::BarGauge => (json!({"mode": "thresholds"}), json!({})),
        };
        FieldConfig {
            defaults: FieldDefaults {
                unit: self.unit.clone(),
                min: self.min,
                max: self.max,
                decimals: None,
                thresholds: Thresholds { mode: "absolute".into(), steps },
                mappings,
                color,
                custom,
            },
            overrides: Vec::new(),
        }
    }
}

/// A dashboard being laid out.
pub struct Board {
    dash: Dashboard,
    next_id: u32,
    x: u32,
    y: u32,
    /// The tallest panel on the current line.
    line_h: u32,
}

impl Board {
    /// A dashboard with the `datasource` variable, Triad's annotations and links to the other
    /// Triad dashboards (by tag).
    pub fn new(uid: &str, title: &str, description: &str) -> Board {
        let dash = Dashboard {
            uid: uid.into(),
            title: title.into(),
            description: description.into(),
            tags: vec!["triad".into()],
            timezone: "browser".into(),
            schema_version: SCHEMA_VERSION,
            version: 1,
            editable: true,
            graph_tooltip: 1,
            refresh: "10s".into(),
            time: TimeRange { from: "now-1h".into(), to: "now".into() },
            templating: Templating { list: vec![datasource_variable()] },
            annotations: Annotations { list: annotations() },
            panels: Vec::new(),
            links: vec![DashboardLink {
                title: "Triad".into(),
                kind: "dashboards".into(),
                tags: vec!["triad".into()],
                as_dropdown: true,
                include_vars: true,
                keep_time: true,
            }],
        };
        Board { dash, next_id: 1, x: 0, y: 0, line_h: 0 }
    }

    /// A variable whose values are those of `label` on `metric`; `all`: several may be chosen,
    /// "All" among them (queries then match with `=~`).
    pub fn variable(mut self, name: &str, label: &str, metric: &str, all: bool) -> Board {
        let query = format!("label_values({metric}, {name})");
        self.dash.templating.list.push(Variable {
            name: name.into(),
            label: label.into(),
            kind: "query".into(),
            query: json!({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"}),
            datasource: Some(DatasourceRef::prometheus()),
            refresh: 2,
            multi: all,
            include_all: all,
            all_value: all.then(|| ".*".into()),
            hide: 0,
            sort: 1,
            current: json!({}),
            options: Vec::new(),
        });
        self
    }

    /// Starts a new titled row across the grid.
    pub fn row(&mut self, title: &str) {
        self.newline();
        let id = self.take_id();
        self.dash.panels.push(Panel {
            id,
            kind: "row".into(),
            title: title.into(),
            description: String::new(),
            grid_pos: GridPos { h: 1, w: GRID_WIDTH, x: 0, y: self.y },
            datasource: None,
            targets: Vec::new(),
            field_config: None,
            options: Value::Null,
            collapsed: Some(false),
            row_panels: Some(Vec::new()),
        });
        self.y += 1;
    }

    /// Places `p` after the last panel, on a new line if it does not fit.
    pub fn add(&mut self, p: PanelSpec) {
        if self.x + p.w > GRID_WIDTH {
            self.newline();
        }
        let id = self.take_id();
        let targets = p
            .queries
            .iter()
            .enumerate()
            .map(|(i, (expr, legend))| Target {
                ref_id: ref_id(i),
                datasource: DatasourceRef::prometheus(),
                expr: expr.clone(),
                legend_format: legend.clone(),
                instant: p.kind == Kind::BarGauge,
                range: p.kind != Kind::BarGauge,
                format: "time_series".into(),
            })
            .collect();
        self.dash.panels.push(Panel {
            id,
            kind: p.kind.plugin().into(),
            title: p.title.clone(),
            description: p.description.clone(),
            grid_pos: GridPos { h: p.h, w: p.w, x: self.x, y: self.y },
            datasource: Some(DatasourceRef::prometheus()),
            targets,
            field_config: Some(p.field_config()),
            options: p.options(),
            collapsed: None,
            row_panels: None,
        });
        self.x += p.w;
        self.line_h = self.line_h.max(p.h);
    }

    pub fn finish(self) -> Dashboard {
        self.dash
    }

    fn newline(&mut self) {
        if self.x > 0 {
            self.y += self.line_h;
        }
        (self.x, self.line_h) = (0, 0);
    }

    fn take_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id - 1
    }
}

/// A, B, ... Z, then AA, AB...
fn ref_id(i: usize) -> String {
    let letter = |n: usize| char::from(b'A' + (n % 26) as u8);
    if i < 26 {
        letter(i).to_string()
    } else {
        format!("{}{}", letter(i / 26 - 1), letter(i))
    }
}

fn datasource_variable() -> Variable {
    Variable {
        name: "datasource".into(),
        label: "Prometheus".into(),
        kind: "datasource".into(),
        query: json!("prometheus"),
        datasource: None,
        refresh: 1,
        multi: false,
        include_all: false,
        all_value: None,
        hide: 0,
        sort: 0,
        current: json!({}),
        options: Vec::new(),
    }
}

/// Triad's own events, drawn on every graph: role changes and fences, from the last-transition
/// timestamps the controllers and agents export (no Grafana API is needed to record them).
fn annotations() -> Vec<Annotation> {
    let ann = |name: &str, color: &str, expr: &str, title: &str, text: &str, tags: &str| Annotation {
        name: name.into(),
        datasource: DatasourceRef::prometheus(),
        enable: true,
        hide: false,
        icon_color: color.into(),
        expr: expr.into(),
        step: "10s".into(),
        title_format: title.into(),
        text_format: text.into(),
        tag_keys: tags.into(),
        use_value_for_time: true,
    };
    vec![
        ann(
            "Role changes",
            "#F2495C",
            crate::queries::ROLE_CHANGE_ANNOTATION,
            "{{kind}} of {{cluster}}",
            "The primary of {{cluster}} changed ({{kind}})",
            "cluster,kind",
        ),
        ann(
            "Fences",
            "#FF9830",
            crate::queries::FENCE_ANNOTATION,
            "fence at {{site}}",
            "The agent {{name}} stopped its primary to honour the lease",
            "site,name",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_flow_left_to_right_and_wrap() {
        let mut b = Board::new("u", "t", "d");
        b.row("r");
        b.add(timeseries("a", "d", "s").q("up", ""));
        b.add(timeseries("b", "d", "s").q("up", ""));
        b.add(stat("c", "d", "none").q("up", ""));
        let d = b.finish();
        let pos: Vec<(u32, u32)> = d.panels.iter().map(|p| (p.grid_pos.x, p.grid_pos.y)).collect();
        assert_eq!(pos, vec![(0, 0), (0, 1), (12, 1), (0, 9)]);
        assert_eq!(d.panels.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(ref_id(0), "A");
        assert_eq!(ref_id(27), "AB");
    }
}
