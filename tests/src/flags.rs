//! The benchmarks' command-line flags: `--name value` pairs after cargo's own `--bench`, each
//! taken once by name, anything left over refused with the bench's usage line.

use std::ops::RangeInclusive;

use anyhow::{bail, Context, Result};

/// The flags given to a benchmark, taken one by one.
pub struct Flags {
    pairs: Vec<(String, String)>,
    usage: &'static str,
}

impl Flags {
    /// The process's arguments; `usage` is shown with any complaint.
    pub fn from_env(usage: &'static str) -> Result<Flags> {
        // cargo passes `--bench` to a bench without libtest's harness; everything else is ours.
        Flags::parse(std::env::args().skip(1).filter(|a| a != "--bench"), usage)
    }

    fn parse(args: impl Iterator<Item = String>, usage: &'static str) -> Result<Flags> {
        let mut pairs = Vec::new();
        let mut it = args;
        while let Some(flag) = it.next() {
            if !flag.starts_with("--") {
                bail!("`{flag}` is not a flag\n{usage}");
            }
            let value = it.next().with_context(|| format!("{flag} needs a value\n{usage}"))?;
            if pairs.iter().any(|(f, _)| f == &flag) {
                bail!("{flag} is given twice\n{usage}");
            }
            pairs.push((flag, value));
        }
        Ok(Flags { pairs, usage })
    }

    /// The value of `--name`, if given.
    pub fn text(&mut self, name: &str) -> Option<String> {
        let at = self.pairs.iter().position(|(f, _)| f == name)?;
        Some(self.pairs.remove(at).1)
    }

    /// The number given as `--name`, if any; it must be in `range`.
    pub fn number(&mut self, name: &str, range: RangeInclusive<u64>) -> Result<Option<u64>> {
        let Some(value) = self.text(name) else { return Ok(None) };
        let usage = self.usage;
        let n: u64 = value.parse().with_context(|| format!("{name} takes a number, not `{value}`\n{usage}"))?;
        if !range.contains(&n) {
            bail!("{name} must be {} to {}, not {n}\n{usage}", range.start(), range.end());
        }
        Ok(Some(n))
    }

    /// Refuses any flag not taken.
    pub fn finish(self) -> Result<()> {
        match self.pairs.first() {
            Some((flag, _)) => bail!("unknown flag {flag}\n{}", self.usage),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Flags> {
        Flags::parse(args.iter().map(|s| s.to_string()), "usage: x [--n N]")
    }

    #[test]
    fn flags_are_taken_by_name_and_checked() {
        let mut f = flags(&["--n", "5", "--mode", "tls"]).unwrap();
        assert_eq!(f.number("--n", 1..=10).unwrap(), Some(5));
        assert_eq!(f.number("--absent", 1..=10).unwrap(), None);
        assert_eq!(f.text("--mode").as_deref(), Some("tls"));
        f.finish().unwrap();
    }

    #[test]
    fn bad_flags_are_refused_with_the_usage() {
        let err = |r: Result<()>| r.unwrap_err().to_string();
        assert!(err(flags(&["--n"]).map(|_| ())).contains("needs a value"));
        assert!(err(flags(&["n", "5"]).map(|_| ())).contains("not a flag"));
        assert!(err(flags(&["--n", "1", "--n", "2"]).map(|_| ())).contains("twice"));
        let mut f = flags(&["--n", "50"]).unwrap();
        assert!(err(f.number("--n", 1..=10).map(|_| ())).contains("1 to 10"));
        let mut f = flags(&["--n", "x"]).unwrap();
        assert!(err(f.number("--n", 1..=10).map(|_| ())).contains("takes a number"));
        let f = flags(&["--other", "1"]).unwrap();
        let e = err(f.finish());
        assert!(e.contains("unknown flag --other") && e.contains("usage: x"), "{e}");
    }
}
