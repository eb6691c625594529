//! The deployment assets (issue 20, item 4): every Kubernetes manifest validates against the
//! Kubernetes 1.30 schemas in strict mode (`kubernetes-validate`, PyPI), the systemd units verify
//! (`systemd-analyze verify`), and both checks fail on a broken copy, so a pass means something.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn run(cmd: &mut Command) -> Result<(bool, String)> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), said))
}

/// Copies `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

#[test]
fn the_kubernetes_manifests_validate_strictly_and_a_broken_one_fails() -> Result<()> {
    let (ok, said) = run(&mut Command::new(deploy().join("kubernetes/validate.sh")))?;
    ensure!(ok && said.contains("files pass"), "{said}");
    let tmp = tempfile::Builder::new().prefix("triad-test-k8s-").tempdir()?;
    let copy = tmp.path().join("kubernetes");
    copy_dir(&deploy().join("kubernetes"), &copy)?;
    // A field the PodDisruptionBudget API does not have.
    let pdb = std::fs::read_dir(&copy)?
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("kind: PodDisruptionBudget")))
        .context("a PodDisruptionBudget manifest")?;
    let text = std::fs::read_to_string(&pdb)?.replace("spec:\n", "spec:\n  maxUnavailible: 1\n");
    std::fs::write(&pdb, text)?;
    let (ok, said) = run(&mut Command::new(copy.join("validate.sh")))?;
    let name = pdb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    ensure!(!ok && said.contains(name), "the misspelt field is caught and the file named: {said}");
    Ok(())
}

#[test]
fn the_systemd_units_verify_and_a_broken_one_fails() -> Result<()> {
    let verify = deploy().join("systemd/verify.sh");
    let (ok, said) = run(&mut Command::new(&verify))?;
    ensure!(ok, "{said}");
    let tmp = tempfile::Builder::new().prefix("triad-test-units-").tempdir()?;
    let unit = tmp.path().join("triad-controller.service");
    let text = std::fs::read_to_string(deploy().join("systemd/triad-controller.service"))?;
    ensure!(text.contains("ProtectSystem=strict") && text.contains("NoNewPrivileges=yes"), "hardened: {text}");
    std::fs::write(&unit, text.replace("ProtectSystem=strict", "ProtectSystem=sometimes"))?;
    let (ok, said) = run(Command::new(&verify).arg(&unit))?;
    ensure!(!ok, "a bad ProtectSystem value fails: {said}");
    Ok(())
}

#[test]
fn the_install_script_says_what_it_would_do_and_changes_nothing() -> Result<()> {
    let (ok, said) = run(Command::new(deploy().join("systemd/install.sh")).arg("--help"))?;
    ensure!(ok && said.contains("--dry-run"), "{said}");
    let (ok, said) =
        run(Command::new(deploy().join("systemd/install.sh")).args(["--dry-run", "--controller", "--agent"]))?;
    ensure!(ok && said.contains("systemctl mask postgresql.service"), "PostgreSQL's own unit is masked: {said}");
    ensure!(said.contains("useradd --system") && said.contains("systemctl enable triad-controller.service"), "{said}");
    ensure!(!Path::new("/etc/systemd/system/triad-controller.service").exists(), "a dry run installs nothing");
    Ok(())
}
