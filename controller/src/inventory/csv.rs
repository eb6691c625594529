//! The asset register as CSV (the `csv` crate): import with every bad row reported by its line
//! and why, never half a row, and export in the same columns, so an export imports back unchanged.
//!
//! Columns (a header row first, in any order; `tag` and `kind` required, others optional):
//! `tag, kind, serial, model, vendor, site, office, assignee, status, purchase_date,
//! warranty_end, end_of_life, host, addresses, seats, expires`. Dates are `YYYY-MM-DD`;
//! `addresses` are separated by spaces; an empty cell is no value; `status` defaults to
//! `in-stock`.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::assets::{tag_ok, AssetKind, AssetSpec, AssetStatus, Day};

/// Every column, in the order an export writes them.
pub const COLUMNS: [&str; 16] = [
    "tag",
    "kind",
    "serial",
    "model",
    "vendor",
    "site",
    "office",
    "assignee",
    "status",
    "purchase_date",
    "warranty_end",
    "end_of_life",
    "host",
    "addresses",
    "seats",
    "expires",
];

/// Most rows one import takes.
pub const MAX_ROWS: usize = 100_000;

/// A row not imported: its line in the file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

/// What a file gave: the good rows, and the bad ones.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<AssetSpec>,
    pub rejected: Vec<Rejected>,
}

/// Why a file cannot be imported at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsvError {
    #[error("the file is empty: a header row is needed ({})", COLUMNS.join(","))]
    Empty,
    #[error("header: unknown column `{name}` (the columns: {})", COLUMNS.join(", "))]
    UnknownColumn { name: String },
    #[error("header: column `{0}` twice")]
    DuplicateColumn(String),
    #[error("header: the `{0}` column is required")]
    MissingColumn(&'static str),
    #[error("more than {MAX_ROWS} rows: split the file")]
    TooManyRows,
    #[error("line {0}: {1}")]
    Unreadable(u64, String),
}

/// Parses `text`; rows naming a site outside `sites` are rejected.
pub fn parse(text: &str, sites: &BTreeSet<String>) -> Result<Parsed, CsvError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| CsvError::Unreadable(1, e.to_string()))?.clone();
    if header.is_empty() || header.iter().all(str::is_empty) {
        return Err(CsvError::Empty);
    }
    let mut columns: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, name) in header.iter().enumerate() {
        let known = COLUMNS
            .iter()
            .find(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| CsvError::UnknownColumn { name: name.chars().take(40).collect() })?;
        if columns.insert(known, i).is_some() {
            return Err(CsvError::DuplicateColumn(known.to_string()));
        }
    }
    for required in ["tag", "kind"] {
        if !columns.contains_key(required) {
            return Err(CsvError::MissingColumn(required));
        }
    }
    let mut parsed = Parsed::default();
    let mut first_line: BTreeMap<String, u64> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            CsvError::Unreadable(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if parsed.rows.len() + parsed.rejected.len() >= MAX_ROWS {
            return Err(CsvError::TooManyRows);
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != header.len() {
            let reason = format!("{} fields, the header has {}", record.len(), header.len());
            parsed.rejected.push(Rejected { line, reason });
            continue;
        }
        match row(&Cells { record: &record, columns: &columns }, sites) {
            Err(reason) => parsed.rejected.push(Rejected { line, reason }),
            Ok(spec) => match first_line.get(&spec.tag) {
                Some(first) => {
                    let reason = format!("tag `{}` is already on line {first}", spec.tag);
                    parsed.rejected.push(Rejected { line, reason });
                }
                None => {
                    first_line.insert(spec.tag.clone(), line);
                    parsed.rows.push(spec);
                }
            },
        }
    }
    Ok(parsed)
}

/// A row's cells by column name (empty when the file has no such column).
struct Cells<'a> {
    record: &'a csv::StringRecord,
    columns: &'a BTreeMap<&'static str, usize>,
}

impl<'a> Cells<'a> {
    fn get(&self, name: &str) -> &'a str {
        self.columns.get(name).and_then(|i| self.record.get(*i)).unwrap_or("")
    }
}

/// One row, or why it cannot be taken.
fn row(cells: &Cells<'_>, sites: &BTreeSet<String>) -> Result<AssetSpec, String> {
    let cell = |name: &str| cells.get(name);
    let tag = cell("tag");
    if !tag_ok(tag) {
        return Err(format!("tag `{}`: 1 to 64 printable characters, no spaces, commas or quotes", clip(tag)));
    }
    let kind: AssetKind =
        cell("kind").parse().map_err(|_| format!("kind `{}`: one of {}", clip(cell("kind")), AssetKind::names()))?;
    let mut spec = AssetSpec::new(tag, kind);
    if !cell("status").is_empty() {
        spec.status = cell("status")
            .parse::<AssetStatus>()
            .map_err(|_| format!("status `{}`: one of {}", clip(cell("status")), AssetStatus::names()))?;
    }
    let date = |name: &str| -> Result<Option<Day>, String> {
        match cell(name) {
            "" => Ok(None),
            text => text.parse().map(Some).map_err(|e| format!("{name}: {e}")),
        }
    };
    spec.purchase_date = date("purchase_date")?;
    spec.warranty_end = date("warranty_end")?;
    spec.end_of_life = date("end_of_life")?;
    spec.expires = date("expires")?;
    spec.seats = match cell("seats") {
        "" => 0,
        n => n.parse().map_err(|_| format!("seats `{}`: a whole number", clip(n)))?,
    };
    let site = cell("site");
    if !site.is_empty() && !sites.contains(site) {
        let known: Vec<&str> = sites.iter().map(String::as_str).collect();
        return Err(format!("site `{}` is unknown (known: {})", clip(site), known.join(", ")));
    }
    for (name, field) in [
        ("serial", &mut spec.serial),
        ("model", &mut spec.model),
        ("vendor", &mut spec.vendor),
        ("site", &mut spec.site),
        ("office", &mut spec.office),
        ("assignee", &mut spec.assignee),
        ("host", &mut spec.host),
    ] {
        let v = cell(name);
        if v.chars().count() > 200 {
            return Err(format!("{name}: at most 200 characters"));
        }
        *field = v.to_string();
    }
    spec.addresses = cell("addresses").split_whitespace().map(str::to_string).collect();
    if spec.addresses.len() > 64 {
        return Err("addresses: at most 64".into());
    }
    if spec.seats > 0 && kind != AssetKind::Licence {
        return Err(format!("seats are for licences, not {kind}"));
    }
    Ok(spec)
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The register as CSV, in [`COLUMNS`] order.
pub fn write<'a>(specs: impl Iterator<Item = &'a AssetSpec>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let day = |d: Option<Day>| d.map(|d| d.to_string()).unwrap_or_default();
    // Writing to memory fails only on a bug; said rather than dropped.
    let mut put = |fields: &[String]| {
        if let Err(e) = w.write_record(fields) {
            tracing::error!("writing the asset CSV: {e}");
        }
    };
    put(&COLUMNS.map(String::from));
    for s in specs {
        put(&[
            s.tag.clone(),
            s.kind.to_string(),
            s.serial.clone(),
            s.model.clone(),
            s.vendor.clone(),
            s.site.clone(),
            s.office.clone(),
            s.assignee.clone(),
            s.status.to_string(),
            day(s.purchase_date),
            day(s.warranty_end),
            day(s.end_of_life),
            s.host.clone(),
            s.addresses.join(" "),
            if s.seats == 0 { String::new() } else { s.seats.to_string() },
            day(s.expires),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites() -> BTreeSet<String> {
        ["dc", "ndc", "dr"].map(String::from).into()
    }

    const REGISTER: &str = "\
tag,kind,serial,model,vendor,site,office,assignee,status,purchase_date,warranty_end,end_of_life,host,addresses,seats,expires
HW-1,hardware,SN1,R740,Dell,dc,Server room,ops,in-use,2023-01-10,2027-01-10,2030-01-01,db1,10.0.0.5 10.0.1.5,,
HW-2,hardware,SN2,R740,Dell,dc,,,in-stock,2023-13-10,,,,,,
LIC-1,licence,,Oracle DB EE,Oracle,dc,,,in-use,,,,,,8,2027-03-01
HW-1,hardware,SN9,R750,Dell,ndc,,,in-use,,,,,,,
HW-3,hardware,SN3,R740,Dell,mars,,,in-use,,,,,,,
HW-4,hardware,SN4
SW-1,software,,Triad,Customs,dr,,,in-use,,,,,,,
";

    #[test]
    fn good_rows_in_bad_rows_reported_by_line_and_nothing_half_taken() {
        let p = parse(REGISTER, &sites()).unwrap();
        let tags: Vec<&str> = p.rows.iter().map(|r| r.tag.as_str()).collect();
        assert_eq!(tags, ["HW-1", "LIC-1", "SW-1"]);
        let lines: Vec<(u64, &str)> = p.rejected.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].0 == 3 && lines[0].1.contains("purchase_date"), "bad date: {lines:?}");
        assert!(lines[1].0 == 5 && lines[1].1.contains("already on line 2"), "duplicate tag: {lines:?}");
        assert!(lines[2].0 == 6 && lines[2].1.contains("mars"), "unknown site: {lines:?}");
        assert!(lines[3].0 == 7 && lines[3].1.contains("3 fields"), "short row: {lines:?}");
        let hw1 = &p.rows[0];
        assert_eq!(hw1.addresses, ["10.0.0.5", "10.0.1.5"]);
        assert_eq!(hw1.warranty_end, Some("2027-01-10".parse().unwrap()));
        assert_eq!(p.rows[1].seats, 8);
    }

    #[test]
    fn an_export_parses_back_to_the_same_rows() {
        let p = parse(REGISTER, &sites()).unwrap();
        let text = write(p.rows.iter());
        let again = parse(&text, &sites()).unwrap();
        assert!(again.rejected.is_empty(), "{:?}", again.rejected);
        assert_eq!(again.rows, p.rows);
        assert_eq!(write(again.rows.iter()), text);
    }

    #[test]
    fn a_bad_header_refuses_the_whole_file() {
        assert_eq!(parse("", &sites()).unwrap_err(), CsvError::Empty);
        assert!(
            matches!(parse("tag,kind,colour\n", &sites()), Err(CsvError::UnknownColumn { name }) if name == "colour")
        );
        assert_eq!(parse("tag,serial\n", &sites()).unwrap_err(), CsvError::MissingColumn("kind"));
        assert!(matches!(parse("tag,kind,tag\n", &sites()), Err(CsvError::DuplicateColumn(_))));
    }
}
