//! `weir top`: a live terminal view of a running pipeline, redrawn every
//! interval from `/status`; `q`, Esc or Ctrl-C quits.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};

use weir::telemetry::Status;

/// Leaves raw mode and the alternate screen however `top` ends.
struct Screen;

impl Screen {
    fn enter() -> Result<Screen> {
        terminal::enable_raw_mode().context("cannot switch the terminal to raw mode")?;
        // The guard exists before anything else can fail.
        let screen = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Runs until the user quits. `fetch` reads the status; on a terminal the
/// view is redrawn in place, otherwise one frame is printed per interval.
pub fn run(
    fetch: impl Fn() -> Result<Status>,
    interval: Duration,
    frames: Option<u64>,
) -> Result<()> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _screen = if tty { Some(Screen::enter()?) } else { None };
    let mut before: Option<(Status, Instant)> = None;
    let mut drawn = 0u64;
    loop {
        let now = Instant::now();
        let lines = match fetch() {
            Ok(status) => {
                let uptime =
                    Duration::from_millis((weir::util::now_ms() - status.started_ms).max(0) as u64);
                let elapsed = before.as_ref().map_or(Duration::ZERO, |(_, t)| now - *t);
                let width = if tty {
                    terminal::size().map_or(120, |(w, _)| w as usize)
                } else {
                    200
                };
                let lines = super::top_screen::render(
                    before.as_ref().map(|(s, _)| s),
                    &status,
                    elapsed,
                    uptime,
                    width,
                );
                before = Some((status, now));
                lines
            }
            Err(e) => vec![
                format!("weir top: {e:#}"),
                "retrying every interval; q quits".into(),
            ],
        };
        let mut out = std::io::stdout().lock();
        if tty {
            queue!(
                out,
                cursor::MoveTo(0, 0),
                terminal::Clear(terminal::ClearType::All)
            )?;
            for (i, l) in lines.iter().enumerate() {
                queue!(out, cursor::MoveTo(0, i as u16))?;
                write!(out, "{l}")?;
            }
        } else {
            for l in &lines {
                writeln!(out, "{l}")?;
            }
            writeln!(out)?;
        }
        out.flush()?;
        drop(out);
        drawn += 1;
        if frames.is_some_and(|n| drawn >= n) {
            return Ok(());
        }
        // Wait for the next frame, watching for keys.
        let next = now + interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !tty {
                std::thread::sleep(left);
                break;
            }
            if event::poll(left)?
                && let Event::Key(k) = event::read()?
            {
                let quit = k.kind != KeyEventKind::Release
                    && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (k.code == KeyCode::Char('c')
                            && k.modifiers.contains(KeyModifiers::CONTROL)));
                if quit {
                    return Ok(());
                }
            }
        }
    }
}
