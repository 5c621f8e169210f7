//! `type = "directory"`: one file per event.
//!
//! ```toml
//! [sinks.gray]
//! type = "directory"
//! inputs = ["grayscale"]
//! path = "../out/gray"
//! name = "filename"      # header holding the file name; default: the event key
//! extension = "png"      # default: from the content-type header, else the name's own
//! headers = false        # true: also write NAME.EXT.json with key, timestamp and headers
//! ```
//!
//! `headers = true` suits dead-letter directories: the sidecar file keeps
//! `weir.reason` and `weir.stage` next to the refused bytes.
//!
//! Each event's bytes go to `path/NAME.EXT`, written atomically (a temporary
//! file, synced, then linked into place) and never over an existing file: a
//! name already taken gets a `-1`, `-2`, ... suffix. Names are reduced to
//! their last path component with unusual characters replaced by `_`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use serde::Deserialize;

use crate::event::Event;
use crate::stage::{BoxError, Component, Sink, SinkContext, StageTask, run_blocking};
use crate::telemetry::StageMetrics;

/// Settings of the `directory` sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Directory to write into (created if missing).
    pub path: PathBuf,
    /// Header holding the file name; absent: the event key.
    #[serde(default)]
    pub name: Option<String>,
    /// Extension of the written files, without the dot.
    #[serde(default)]
    pub extension: Option<String>,
    /// Also write `NAME.EXT.json` with the event's key, timestamp and headers.
    #[serde(default)]
    pub headers: bool,
}

fn sanitize(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_owned();
    if clean.is_empty() {
        "event".into()
    } else {
        clean
    }
}

fn extension_for(content_type: &[u8]) -> Option<&'static str> {
    match content_type {
        b"image/png" => Some("png"),
        b"image/jpeg" => Some("jpg"),
        b"application/json" => Some("json"),
        b"text/plain" => Some("txt"),
        _ => None,
    }
}

impl DirectoryConfig {
    /// The file name (stem, extension) for an event.
    fn file_name(&self, event: &Event) -> (String, String) {
        let raw = match &self.name {
            Some(h) => event
                .header(h)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            None => event
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
        }
        .unwrap_or_else(|| format!("event-{}", event.timestamp_ms));
        let name = sanitize(&raw);
        let (stem, own_ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s.to_owned(), Some(e.to_owned())),
            _ => (name.clone(), None),
        };
        let ext = self
            .extension
            .clone()
            .or_else(|| {
                event
                    .header("content-type")
                    .and_then(|c| extension_for(c))
                    .map(str::to_owned)
            })
            .or(own_ext)
            .unwrap_or_else(|| "bin".into());
        (stem, ext)
    }
    fn run(self, mut ctx: SinkContext) -> Result<(), BoxError> {
        while let Some(batch) = ctx.blocking_next_batch() {
            StageMetrics::add(&ctx.metrics.events_in, batch.events.len() as u64);
            let started = std::time::Instant::now();
            for event in &batch.events {
                let (stem, ext) = self.file_name(event);
                let path = write_new(&self.path, &stem, &ext, &event.value)
                    .map_err(|e| format!("cannot write into {}: {e}", self.path.display()))?;
                if self.headers {
                    let mut meta = Vec::new();
                    super::write_line(
                        &mut meta,
                        &Event {
                            value: Default::default(),
                            ..event.clone()
                        },
                        super::LineFormat::Json,
                    );
                    let file = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    write_new(&self.path, &file, "json", &meta)
                        .map_err(|e| format!("cannot write into {}: {e}", self.path.display()))?;
                }
                tracing::debug!(file = %path.display(), bytes = event.value.len(), "written");
                StageMetrics::add(&ctx.metrics.events_out, 1);
            }
            ctx.metrics.record_batch(started.elapsed());
            drop(batch); // every file is in place: release the acknowledgements
        }
        Ok(())
    }
}

impl Sink for DirectoryConfig {
    fn build(&self, ctx: SinkContext) -> Result<StageTask, BoxError> {
        std::fs::create_dir_all(&self.path)
            .map_err(|e| format!("cannot create directory {}: {e}", self.path.display()))?;
        let config = self.clone();
        Ok(async move { run_blocking(move || config.run(ctx)).await? }.boxed())
    }
}

impl Component for DirectoryConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.path]
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `dir/stem.ext`, or `dir/stem-N.ext` when taken, never
/// replacing a file. Returns the path written.
pub fn write_new(dir: &Path, stem: &str, ext: &str, data: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = dir.join(format!(
        ".{stem}.{}-{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = std::fs::File::create(&tmp)?;
    let result = (|| {
        f.write_all(data)?;
        f.sync_data()?;
        for n in 0u64.. {
            let name = if n == 0 {
                format!("{stem}.{ext}")
            } else {
                format!("{stem}-{n}.{ext}")
            };
            let target = dir.join(name);
            // A hard link fails when the target exists: no file is ever
            // replaced, and the new name appears complete or not at all.
            match std::fs::hard_link(&tmp, &target) {
                Ok(()) => return Ok(target),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("u64 names run out")
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_and_never_overwritten() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("my photo (1).jpg"), "my_photo__1_.jpg");
        assert_eq!(sanitize(".hidden"), "hidden");
        let dir = tempfile::tempdir().unwrap();
        let a = write_new(dir.path(), "x", "png", b"1").unwrap();
        let b = write_new(dir.path(), "x", "png", b"2").unwrap();
        assert_eq!(a.file_name().unwrap(), "x.png");
        assert_eq!(b.file_name().unwrap(), "x-1.png");
        assert_eq!(std::fs::read(&a).unwrap(), b"1");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary file left"
        );
    }

    #[test]
    fn extension_comes_from_config_then_content_type_then_name() {
        let mut e = Event::new("x", 5);
        e.key = Some("astronaut.jpg".into());
        let c = DirectoryConfig {
            path: "d".into(),
            name: None,
            extension: None,
            headers: false,
        };
        assert_eq!(c.file_name(&e), ("astronaut".into(), "jpg".into()));
        e.headers.push(("content-type".into(), "image/png".into()));
        assert_eq!(c.file_name(&e), ("astronaut".into(), "png".into()));
        let c = DirectoryConfig {
            extension: Some("gray".into()),
            ..c
        };
        assert_eq!(c.file_name(&e).1, "gray");
        e.key = None;
        assert_eq!(c.file_name(&e).0, "event-5");
    }
}
