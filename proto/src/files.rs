//! Reading the small files every Triad program is configured with (configs, certificates),
//! bounded: a path that names a device or a huge file (`/dev/zero`) is an error, not a process
//! that grows until the host runs out of memory.

use std::io::Read;
use std::path::Path;

/// The most a configuration file may hold: real ones are a few kilobytes.
pub const CONFIG_LIMIT: u64 = 1 << 20;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("larger than {limit} bytes: not a configuration file")]
    TooLarge { limit: u64 },
    #[error("not UTF-8 text")]
    NotText,
}

/// The bytes of `path`, refused when it holds more than `limit`.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(buf)
}

/// The text of a configuration file at `path`, at most [`CONFIG_LIMIT`] bytes.
pub fn read_config(path: &Path) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path, CONFIG_LIMIT)?).map_err(|_| ReadError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_and_a_small_one_read() {
        assert!(matches!(read_config(Path::new("/dev/zero")), Err(ReadError::TooLarge { .. })));
        let dir = std::env::temp_dir().join(format!("triad-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.toml");
        std::fs::write(&small, "a = 1\n").unwrap();
        assert_eq!(read_config(&small).unwrap(), "a = 1\n");
        std::fs::write(&small, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_config(&small), Err(ReadError::NotText)));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(read_config(&dir.join("missing")), Err(ReadError::Io(_))));
    }
}
