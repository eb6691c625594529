//! A slow disk for one process: a fresh ext4 filesystem on a loop device, mounted over a
//! directory, whose writes by the processes admitted to its block-I/O cgroup are limited to a few
//! operations a second (cgroup v1 `blkio.throttle.write_iops_device`, or v2 `io.max`). The
//! kernel here has no device mapper (no `dm-delay`), so the throttle is what slows the disk;
//! one small write and rename takes about a second at 1 IOPS, an fsync'd epoch file two.
//!
//! Everything is undone on drop, also when the test fails: the admitted processes go back to the
//! root cgroup, the filesystem is unmounted (lazily, should a process still hold it), the loop
//! device detached and the image removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where the block-I/O controller is, and which version it is.
enum Controller {
    V1(PathBuf),
    V2(PathBuf),
}

fn controller() -> Option<Controller> {
    let v1 = Path::new("/sys/fs/cgroup/blkio");
    if v1.join("cgroup.procs").exists() {
        return Some(Controller::V1(v1.to_path_buf()));
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).ok()?;
    controllers.split_whitespace().any(|c| c == "io").then(|| Controller::V2(v2.to_path_buf()))
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Why a slow disk cannot be made here (`None`: it can): needs root, loop devices, `mkfs.ext4`
/// and a block-I/O cgroup controller.
pub fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        return Some("not root".into());
    }
    if controller().is_none() {
        return Some("no block-I/O cgroup controller (blkio or io)".into());
    }
    for tool in ["losetup", "mkfs.ext4", "mount", "umount"] {
        if run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} is missing"));
        }
    }
    None
}

/// A mounted, throttled filesystem (see the module's doc).
pub struct SlowDisk {
    image: PathBuf,
    device: String,
    mount: PathBuf,
    cgroup: PathBuf,
    /// The throttle's file and the device's `MAJ:MIN`.
    limit: (PathBuf, String),
    v2: bool,
    root_procs: PathBuf,
    admitted: Vec<u32>,
}

impl SlowDisk {
    /// Mounts a new 64 MiB ext4 filesystem over `mount` (created if missing; it should be empty)
    /// whose writes by admitted processes are limited to `write_iops` a second (0: no limit). `image` is
    /// where the filesystem's backing file goes.
    pub fn create(image: &Path, mount: &Path, write_iops: u32) -> Result<SlowDisk> {
        let ctl = controller().context("no block-I/O cgroup controller")?;
        std::fs::File::create(image)?.set_len(64 << 20)?;
        let device = run("losetup", &["-f", "--show", &image.display().to_string()])?;
        // Unique per disk: a process may make several.
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("triad-slow-{}-{n}", std::process::id());
        let (cgroup, root_procs) = match &ctl {
            Controller::V1(root) | Controller::V2(root) => (root.join(&name), root.join("cgroup.procs")),
        };
        let mut disk = SlowDisk {
            image: image.to_path_buf(),
            device: device.clone(),
            mount: mount.to_path_buf(),
            cgroup: PathBuf::new(),
            limit: (PathBuf::new(), String::new()),
            v2: matches!(ctl, Controller::V2(_)),
            root_procs,
            admitted: Vec::new(),
        };
        run("mkfs.ext4", &["-q", &device])?;
        std::fs::create_dir_all(mount)?;
        run("mount", &[&device, &mount.display().to_string()])?;
        let majmin = run("lsblk", &["-dno", "MAJ:MIN", &device])?.replace(' ', "");
        std::fs::create_dir(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
        disk.cgroup = cgroup.clone();
        let file = if disk.v2 { "io.max" } else { "blkio.throttle.write_iops_device" };
        disk.limit = (cgroup.join(file), majmin);
        disk.set_write_iops(write_iops)?;
        Ok(disk)
    }

    /// Changes the limit: `write_iops` write operations a second (0: no limit).
    pub fn set_write_iops(&self, write_iops: u32) -> Result<()> {
        let (file, majmin) = &self.limit;
        let line = match (self.v2, write_iops) {
            (true, 0) => format!("{majmin} wiops=max"),
            (true, n) => format!("{majmin} wiops={n}"),
            // cgroup v1 reads a limit of 0 as "remove the rule".
            (false, n) => format!("{majmin} {n}"),
        };
        std::fs::write(file, line).with_context(|| format!("writing {}", file.display()))
    }

    /// Puts process `pid` (all its threads) under the throttle.
    pub fn admit(&mut self, pid: u32) -> Result<()> {
        std::fs::write(self.cgroup.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("admitting {pid} to {}", self.cgroup.display()))?;
        self.admitted.push(pid);
        Ok(())
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        // Whatever is in the cgroup now: the admitted processes and their children (a server the
        // agent started). Gone already is fine: killed with its deployment.
        let inside = std::fs::read_to_string(self.cgroup.join("cgroup.procs")).unwrap_or_default();
        let pids = inside.lines().map(str::to_string).chain(self.admitted.iter().map(u32::to_string));
        for pid in pids {
            let _ = std::fs::write(&self.root_procs, pid);
        }
        let _ = run("umount", &["-l", &self.mount.display().to_string()]);
        let _ = run("losetup", &["-d", &self.device]);
        if !self.cgroup.as_os_str().is_empty() {
            if let Err(e) = std::fs::remove_dir(&self.cgroup) {
                eprintln!("cannot remove {}: {e}", self.cgroup.display());
            }
        }
        let _ = std::fs::remove_file(&self.image);
    }
}
