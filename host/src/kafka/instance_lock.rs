//! One live process per exactly-once instance on a host: an exclusive
//! `flock` on `<lock dir>/<transactional id>.lock`, holding the owner's PID.
//!
//! Kafka alone cannot refuse a second process with the same instance id
//! without also making a crashed one wait for its group session to expire
//! before it may restart; a lock the kernel drops when its process dies
//! (SIGKILL included) gives both. Across hosts, an instance id belongs to
//! one host (a StatefulSet's stable name, a systemd instance); a process
//! elsewhere with the same id fences this one through Kafka instead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where the locks live: `$WEIR_LOCK_DIR`, else `$XDG_RUNTIME_DIR/weir`,
/// else the temporary directory's `weir-locks`.
pub fn lock_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_LOCK_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(run) => Path::new(&run).join("weir"),
        None => std::env::temp_dir().join("weir-locks"),
    }
}

/// The lock, held while the value lives.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock of `transactional_id` in `dir`; `Err` names the
    /// process holding it.
    pub fn take(dir: &Path, transactional_id: &str) -> Result<InstanceLock, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the lock directory {}: {e}", dir.display()))?;
        let path = dir.join(format!("{transactional_id}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(format!(
                "instance {transactional_id} is in use by another weir on this host{} (lock {}); give this process another instance_id, or stop that one",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
                path.display()
            ));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        Ok(InstanceLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_may_take_it_once_released() {
        let dir = std::env::temp_dir().join(format!("weir-lock-test-{}", std::process::id()));
        let first = InstanceLock::take(&dir, "weir-p-1").unwrap();
        // flock locks belong to the open file: a second open in the same
        // process is refused like another process would be.
        let err = InstanceLock::take(&dir, "weir-p-1").unwrap_err();
        assert!(err.contains("weir-p-1 is in use"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(
            InstanceLock::take(&dir, "weir-p-2").is_ok(),
            "other ids are free"
        );
        drop(first);
        assert!(InstanceLock::take(&dir, "weir-p-1").is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
