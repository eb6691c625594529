//! The committed dashboards and provisioning files are exactly what the generator makes, they
//! pass the offline checks, and the checks fail on broken fixtures (a missing unit, an undefined
//! variable, a duplicate id, a datasource that is not the variable, another schema version).

use std::path::{Path, PathBuf};

use triad_dashboards::lint::check;

fn repo_dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn the_committed_files_are_what_the_generator_makes() {
    let stale = triad_dashboards::stale(&repo_dashboards()).unwrap();
    assert!(
        stale.is_empty(),
        "these files differ from the generator's output; run `triadctl dashboards write --dir dashboards` \
         (or `cargo run -p triad-controller --bin triadctl -- dashboards write --dir dashboards`) and commit: {stale:?}"
    );
}

#[test]
fn every_generated_dashboard_passes_the_offline_checks() {
    let checked = triad_dashboards::check_dir(&repo_dashboards().join("grafana")).unwrap();
    assert_eq!(checked.len(), 5, "five dashboards: {checked:?}");
    for (path, problems) in checked {
        assert!(problems.is_empty(), "{}: {problems:?}", path.display());
    }
}

fn fixture(name: &str) -> Vec<String> {
    let path = repo_dashboards().join("tests/fixtures").join(name);
    check(&triad_dashboards::read(&path).unwrap()).iter().map(ToString::to_string).collect()
}

#[test]
fn a_good_fixture_passes() {
    assert_eq!(fixture("good.json"), Vec::<String>::new());
}

#[test]
fn a_panel_without_a_unit_fails() {
    let p = fixture("missing-unit.json");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("panel 2 \"Round trip\"") && p[0].contains("no unit"), "{p:?}");
}

#[test]
fn an_undefined_variable_fails() {
    let p = fixture("undefined-variable.json");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("`$site`"), "{p:?}");
}

#[test]
fn a_repeated_panel_id_a_fixed_datasource_and_another_schema_fail() {
    let p = fixture("several-problems.json");
    let all = p.join("\n");
    assert!(all.contains("id 2 is used by another panel"), "{all}");
    assert!(all.contains("not the `${datasource}` variable"), "{all}");
    assert!(all.contains("schemaVersion is Some(27)"), "{all}");
    assert!(all.contains("has no description"), "{all}");
    // The datasource is fixed on the panel and on its query: both are named.
    assert_eq!(p.len(), 5, "{all}");
}

#[test]
fn a_dashboard_not_shaped_as_schema_39_fails() {
    let p = fixture("bad-shape.json");
    let all = p.join("\n");
    assert!(all.contains("`time.from` is missing") && all.contains("`time.to` is missing"), "{all}");
    assert!(all.contains("has type `graphh`, not a core panel"), "{all}");
    assert!(all.contains("`link` has type `querry`"), "{all}");
    assert_eq!(p.len(), 4, "{all}");
}
