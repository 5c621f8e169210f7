//! `weir status` and `weir reload`: one request to a running pipeline's
//! admin endpoint, its answer printed.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::AdminClient;

/// `weir reload`: asks for a reload and prints its outcome.
pub fn reload(client: &AdminClient) -> Result<ExitCode> {
    let (code, body) = client.request(reqwest::Method::POST, "/reload")?;
    let report: weir::telemetry::ReloadReport = serde_json::from_str(&body)
        .with_context(|| format!("unexpected answer from the admin endpoint ({code}): {body}"))?;
    if report.ok {
        println!("reload {}: {}", report.id, report.summary());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: reload {}: {}", report.id, report.summary());
        Ok(ExitCode::FAILURE)
    }
}

/// `weir status`: the stages, counters and last reload as a table (or
/// the raw JSON).
pub fn status(client: &AdminClient, json: bool) -> Result<ExitCode> {
    let (code, body) = client.request(reqwest::Method::GET, "/status")?;
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let s: weir::telemetry::Status = serde_json::from_str(&body)
        .with_context(|| format!("unexpected answer from the admin endpoint ({code}): {body}"))?;
    match &s.instance {
        Some(member) => println!("pipeline {} (pid {}, member {member})", s.pipeline, s.pid),
        None => println!("pipeline {} (pid {})", s.pipeline, s.pid),
    }
    println!(
        "{:<20} {:<9} {:<11} {:>8} {:<8} {:>12} {:>12} {:>9} {:>7} {:>6} {:>10}",
        "STAGE",
        "KIND",
        "TYPE",
        "INSTANCE",
        "STATE",
        "IN",
        "OUT",
        "REJECTED",
        "ERRORS",
        "TASKS",
        "STATE_SIZE"
    );
    for st in &s.stages {
        let c = &st.counters;
        let plugin = st.type_name == "wasm";
        println!(
            "{:<20} {:<9} {:<11} {:>8} {:<8} {:>12} {:>12} {:>9} {:>7} {:>6} {:>10}",
            st.name,
            st.kind,
            st.type_name,
            st.instance,
            format!("{:?}", st.state).to_lowercase(),
            c.events_in,
            c.events_out,
            c.rejected,
            c.errors,
            if plugin {
                c.partitions.len().to_string()
            } else {
                "-".into()
            },
            if plugin {
                format!("{} B", c.state_bytes)
            } else {
                "-".into()
            },
        );
    }
    for st in s
        .stages
        .iter()
        .filter(|st| !st.counters.partitions.is_empty())
    {
        println!(
            "tasks of {}: partitions {}",
            st.name,
            st.counters
                .partitions
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    println!(
        "reloads: {} applied, {} failed",
        s.reloads_ok, s.reloads_failed
    );
    if !s.guarantee.is_empty() {
        println!("guarantee: {}", s.guarantee);
    }
    if let Some(t) = &s.transactions {
        println!(
            "transactions ({}): {} committed, {} aborted, last commit {:.1} ms (checkpoint {})",
            t.transactional_id, t.commits, t.aborts, t.last_commit_ms, t.checkpoint
        );
    }
    if let Some(r) = &s.last_reload {
        println!(
            "last reload {} ({}, {} ms): {}",
            r.id,
            r.trigger,
            r.duration_ms,
            r.summary()
        );
    }
    Ok(ExitCode::SUCCESS)
}
