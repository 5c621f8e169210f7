//! Hot reload: a new pipeline file applied to the running graph. The file
//! is compiled and diffed against the running pipeline ([`super::plan`]);
//! everything that can fail is prepared first; then plugins are updated in
//! place, new stages start, changed ones are replaced (taking over their
//! predecessor's queue), edges are rewired between batches and removed
//! stages drain. Stages not in the plan are not touched.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Topology;
use super::launch::{InputFrom, Launch, StageSlot};
use super::plan::{self, Fingerprints};
use super::reload_error::ReloadError;
use crate::checkpoint::SourceControl;
use crate::config::{ComponentConfig, Kind, Pipeline, Stage};
use crate::event::Batch;
use crate::stage::{Inbox, Update, UpdateOutcome};
use crate::telemetry::{Failure, ReloadReport, StageState};
use crate::util::now_ms;

/// How long a reload waits for a stage instance to stop or swap.
const STAGE_WAIT: Duration = Duration::from_secs(60);

impl Topology {
    /// Reloads the pipeline from its file: the new file is parsed and
    /// checked, then only what changed is touched. Unchanged stages keep
    /// running as they are; changed `wasm` stages get the new plugin or
    /// settings in place with their state carried over; other changed
    /// stages are replaced by a new instance that takes over the old one's
    /// queue; new stages start; removed stages drain and stop; edges are
    /// rewired between batches. An invalid file, or a new stage, plugin or
    /// model that does not build, is rejected and nothing changes.
    pub async fn reload(&mut self, trigger: &str) -> ReloadReport {
        let started = Instant::now();
        self.reloads += 1;
        let mut report = ReloadReport {
            id: self.reloads,
            trigger: trigger.to_owned(),
            at_ms: now_ms(),
            ..ReloadReport::default()
        };
        if let Err(reason) = self.apply_reload(&mut report).await {
            report.rejected = Some(reason.to_string());
        }
        report.ok = report.rejected.is_none() && report.failed.is_empty();
        report.duration_ms = started.elapsed().as_millis() as u64;
        if report.ok {
            tracing::info!(
                reload = report.id,
                trigger,
                kept = report.kept.len(),
                swapped = report.swapped.len(),
                restarted = report.restarted.len(),
                added = report.added.len(),
                removed = report.removed.len(),
                elapsed_ms = report.duration_ms,
                "reload applied: {}",
                report.summary()
            );
        } else {
            tracing::error!(
                reload = report.id,
                trigger,
                "reload failed: {}",
                report.summary()
            );
        }
        self.publish();
        self.telemetry.record_reload(report.clone());
        report
    }

    async fn apply_reload(&mut self, report: &mut ReloadReport) -> Result<(), ReloadError> {
        if self.shutdown.is_cancelled() {
            return Err(ReloadError::ShuttingDown);
        }
        let file = self.pipeline.file.clone();
        let new = tokio::task::block_in_place(|| crate::config::load(&file))?;
        let new_prints = tokio::task::block_in_place(|| fingerprints(&new))?;
        let plan = plan::diff(&self.pipeline, &new, &self.prints, &new_prints)?;
        // A checkpoint must match the graph it was taken from: the graph
        // changes only while no checkpoint is in flight.
        let pause = self.checkpoints.is_some() && plan.is_structural(&new);
        if pause {
            self.pause_checkpoints().await?;
            if self.shutdown.is_cancelled() {
                self.resume_checkpoints(Vec::new());
                return Err(ReloadError::ShuttingDown);
            }
        }
        let result = self.apply_plan(plan, new, new_prints, report).await;
        if pause {
            let started = report
                .added
                .iter()
                .chain(&report.restarted)
                .cloned()
                .collect();
            self.resume_checkpoints(started);
        }
        result
    }

    /// Carries out a checked plan (see [`Topology::reload`]).
    async fn apply_plan(
        &mut self,
        plan: plan::Plan,
        new: Pipeline,
        new_prints: Fingerprints,
        report: &mut ReloadReport,
    ) -> Result<(), ReloadError> {
        report.kept = plan.keep.clone();
        report.rewired = plan.rewire.clone();
        let old = std::mem::replace(&mut self.pipeline, new.clone());
        let mut effective = new;
        let mut prints = new_prints;

        // Prepare everything that can fail before changing anything.
        let prepared = match self.prepare(&plan).await {
            Ok(p) => p,
            Err(e) => {
                self.pipeline = old;
                return Err(e);
            }
        };
        let Prepared {
            updates,
            launches,
            restarts,
        } = prepared;

        // 1. Update transforms in place (a new plugin build or settings).
        for (name, update, outcome) in updates {
            match self.update(&name, update, outcome).await {
                Ok(pause_us) => {
                    report.swapped.push(name);
                    report.max_swap_pause_us = report.max_swap_pause_us.max(pause_us);
                }
                Err(reason) => {
                    // The stage keeps running as it was.
                    effective.stages[&name].component = old.stages[&name].component.clone();
                    match self.prints.get(&name) {
                        Some(p) => prints.insert(name.clone(), p.clone()),
                        None => prints.remove(&name),
                    };
                    report.failed.push(Failure {
                        stage: name,
                        reason: reason.to_string(),
                    });
                }
            }
        }
        // 2. New transforms and sinks start, waiting for input.
        let mut source_launches = Vec::new();
        for l in launches {
            if self.slots[&l.name].kind == Kind::Source {
                source_launches.push(l);
            } else {
                report.added.push(l.name.clone());
                self.spawn(l);
            }
        }
        // 3. Changed transforms and sinks: the old instance stops between
        // batches and hands its queue to the new one.
        for (l, give) in restarts {
            let slot = self.slots.get_mut(&l.name).expect("restarted stages exist");
            if let Some(from) = slot.handback.take() {
                tokio::spawn(async move {
                    if let Ok(inbox) = from.await {
                        let _ = give.send(inbox);
                    }
                });
            }
            slot.stop.cancel();
            report.restarted.push(l.name.clone());
            self.spawn(l);
        }
        // 4. Rewire: dead-letter targets, then new edges, then removed ones.
        self.rewire(&old).await;
        // 5. Changed sources stop, and start again from where they were.
        for name in &plan.restart {
            if self.slots[name].kind != Kind::Source {
                continue;
            }
            match self.restart_source(name, &old).await {
                Ok(()) => report.restarted.push(name.clone()),
                Err(reason) => {
                    effective.stages[name].component = old.stages[name].component.clone();
                    report.failed.push(Failure {
                        stage: name.clone(),
                        reason: reason.to_string(),
                    });
                }
            }
        }
        // 6. New sources start.
        for l in source_launches {
            report.added.push(l.name.clone());
            self.spawn(l);
        }
        // 7. Removed stages drain and stop.
        for name in &plan.remove {
            self.remove(name).await;
            report.removed.push(name.clone());
        }
        self.pipeline = effective;
        self.prints = prints;
        self.writers.update(&self.pipeline);
        Ok(())
    }

    /// Builds what a reload needs: new plugin instances, new stages (with
    /// their slots and channels), replacement instances. Nothing runs yet;
    /// on failure everything built is dropped and the slots of new stages
    /// are removed again.
    async fn prepare(&mut self, plan: &plan::Plan) -> Result<Prepared, ReloadError> {
        let new = self.pipeline.clone();
        let mut errors = Vec::new();
        let mut updates = Vec::new();
        for name in &plan.swap {
            let ComponentConfig::Transform(c) = &new.stages[name].component else {
                return Err(ReloadError::Stage {
                    stage: name.clone(),
                    source: "it cannot be updated in place".into(),
                });
            };
            match tokio::task::block_in_place(|| c.component().prepare_update(name)) {
                Ok((update, outcome)) => updates.push((name.clone(), update, outcome)),
                Err(source) => errors.push(ReloadError::Stage {
                    stage: name.clone(),
                    source,
                }),
            }
        }
        let mut launches = Vec::new();
        for name in &plan.add {
            let stage = &new.stages[name];
            let kind = stage.component.kind();
            let (tx, input) = if kind == Kind::Source {
                (None, InputFrom::Nothing)
            } else {
                let (tx, rx) = mpsc::channel(self.capacity);
                // Edges are attached later, each announcing itself.
                let inbox = Inbox::new(rx, 0, true);
                (Some(tx), InputFrom::Fresh(inbox))
            };
            let mut slot = self.new_slot(stage, Vec::new(), None, tx.as_ref());
            // Keeps the channel open until `rewire` has attached its edges.
            slot.pending_tx = tx;
            self.slots.insert(name.clone(), slot);
            let control = (kind == Kind::Source)
                .then(|| self.joined_source(&stage.name))
                .flatten();
            match tokio::task::block_in_place(|| self.launch(stage, input, control, None)) {
                Ok(l) => launches.push(l),
                Err(source) => errors.push(ReloadError::Stage {
                    stage: name.clone(),
                    source,
                }),
            }
        }
        let mut restarts = Vec::new();
        for name in &plan.restart {
            let stage = &new.stages[name];
            if stage.component.kind() == Kind::Source {
                continue;
            }
            let (give, take) = oneshot::channel();
            match tokio::task::block_in_place(|| {
                self.launch(stage, InputFrom::Handover(take), None, None)
            }) {
                Ok(l) => restarts.push((l, give)),
                Err(source) => errors.push(ReloadError::Stage {
                    stage: name.clone(),
                    source,
                }),
            }
        }
        if !errors.is_empty() {
            for name in &plan.add {
                self.slots.shift_remove(name);
            }
            return Err(ReloadError::Stages(errors));
        }
        Ok(Prepared {
            updates,
            launches,
            restarts,
        })
    }

    /// Sends a prepared update to its running stage and waits for the
    /// outcome; returns the processing pause it caused, microseconds.
    async fn update(
        &mut self,
        name: &str,
        update: Update,
        outcome: UpdateOutcome,
    ) -> Result<u64, ReloadError> {
        let slot = self.slots.get_mut(name).expect("updated stages exist");
        let sent = slot
            .updates
            .as_ref()
            .is_some_and(|u| u.send(update).is_ok());
        if !sent {
            return Err(ReloadError::NotRunning);
        }
        let o = tokio::time::timeout(STAGE_WAIT, outcome)
            .await
            .map_err(|_| ReloadError::UpdateTimedOut)?
            .map_err(|_| ReloadError::UpdateDropped)?
            .map_err(ReloadError::UpdateRefused)?;
        slot.instance = self.next_instance;
        self.next_instance += 1;
        slot.started_ms = now_ms();
        Ok(o.pause_us)
    }

    /// Brings every slot's edges and dead-letter target in line with the
    /// (new) pipeline. New edges are attached before old ones are detached,
    /// so a stage never sees all its inputs end during a rewire.
    async fn rewire(&mut self, old: &Pipeline) {
        let pipeline = self.pipeline.clone();
        let sender_of = |slots: &IndexMap<String, StageSlot>, name: &str| {
            slots
                .get(name)
                .and_then(|s| s.inbox.as_ref())
                .and_then(mpsc::WeakSender::upgrade)
        };
        // Take every new dead-letter sender before releasing any old one:
        // when two stages trade dead-letter sinks, the first retarget would
        // otherwise drop a sink's last sender and end it before the second
        // stage is pointed at it.
        let retargets: Vec<(String, Option<mpsc::Sender<Batch>>)> = pipeline
            .stages
            .values()
            .filter(|stage| {
                old.stages.get(&stage.name).map(|s| &s.dead_letter) != Some(&stage.dead_letter)
            })
            .map(|stage| {
                let target = stage
                    .dead_letter
                    .as_deref()
                    .and_then(|d| sender_of(&self.slots, d));
                (stage.name.clone(), target)
            })
            .collect();
        let mut detached = Vec::new();
        for (name, target) in retargets {
            detached.push(self.slots[&name].dead_letters.retarget(target).await);
        }
        for d in detached {
            d.end().await;
        }
        let mut detach = Vec::new();
        for stage in pipeline.stages.values() {
            let slot = &self.slots[&stage.name];
            if slot.kind == Kind::Sink {
                continue;
            }
            let want: HashSet<String> = pipeline
                .consumers_of(&stage.name)
                .map(|c| c.name.clone())
                .collect();
            let have: HashSet<String> = slot.output.consumers().await.into_iter().collect();
            for to in want.difference(&have) {
                match sender_of(&self.slots, to) {
                    Some(tx) => slot.output.attach(to, tx).await,
                    None => tracing::warn!(
                        stage = stage.name,
                        to,
                        "cannot connect: the consuming stage has ended"
                    ),
                }
            }
            for to in have.difference(&want) {
                detach.push((stage.name.clone(), to.clone()));
            }
        }
        for (from, to) in detach {
            self.slots[&from].output.detach(&to).await;
        }
        for slot in self.slots.values_mut() {
            slot.pending_tx = None;
        }
    }

    /// Stops a source, then starts it with its new settings from the
    /// position where it stopped (for sources that have one). If the new
    /// settings do not build, the old ones are started again.
    async fn restart_source(&mut self, name: &str, old: &Pipeline) -> Result<(), ReloadError> {
        let stage = self.pipeline.stages[name].clone();
        let slot = &self.slots[name];
        slot.stop.cancel();
        let ended = slot.ended.clone();
        if tokio::time::timeout(STAGE_WAIT, ended.cancelled())
            .await
            .is_err()
        {
            return Err(ReloadError::SourceStuck);
        }
        let position = slot.stopped_at.lock().expect("position lock").take();
        // With checkpoints, the new instance takes checkpoint requests on a
        // channel of its own.
        let control =
            |base: Option<SourceControl>, pos: Option<serde_json::Value>, stage: &Stage| {
                let mut c =
                    base.unwrap_or_else(|| SourceControl::plain(name, CancellationToken::new()));
                if stage.component.hooks().resumes_where_stopped() {
                    c.resume = pos;
                }
                c
            };
        // `launch` adds the instance's stop token to the control.
        let base = self.joined_source(name);
        let first = tokio::task::block_in_place(|| {
            self.launch(
                &stage,
                InputFrom::Nothing,
                Some(control(base, position.clone(), &stage)),
                None,
            )
        });
        match first {
            Ok(l) => {
                self.spawn(l);
                Ok(())
            }
            Err(e) => {
                let before = old.stages[name].clone();
                let base = self.joined_source(name);
                let back = tokio::task::block_in_place(|| {
                    self.launch(
                        &before,
                        InputFrom::Nothing,
                        Some(control(base, position, &before)),
                        None,
                    )
                });
                match back {
                    Ok(l) => {
                        self.spawn(l);
                        Err(ReloadError::RolledBack(e))
                    }
                    Err(e2) => Err(ReloadError::RollbackFailed { new: e, old: e2 }),
                }
            }
        }
    }

    /// Drains and stops a stage that is no longer in the pipeline.
    async fn remove(&mut self, name: &str) {
        let Some(slot) = self.slots.shift_remove(name) else {
            return;
        };
        self.telemetry
            .update_stage(name, |s| s.state = StageState::Ended);
        if slot.kind == Kind::Source {
            slot.stop.cancel();
            if tokio::time::timeout(STAGE_WAIT, slot.ended.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(stage = name, "removed source did not stop in time");
            }
            for to in slot.output.consumers().await {
                slot.output.detach(&to).await;
            }
        }
        // Transforms and sinks were detached from every input by `rewire`;
        // they process what is queued, flush and end on their own.
    }
}

/// What [`Topology::prepare`] built.
struct Prepared {
    updates: Vec<(String, Update, UpdateOutcome)>,
    launches: Vec<Launch>,
    restarts: Vec<(Launch, oneshot::Sender<Inbox>)>,
}

/// Digests of what every stage runs besides its settings (plugins,
/// models).
pub(super) fn fingerprints(p: &Pipeline) -> Result<Fingerprints, ReloadError> {
    let mut prints = Fingerprints::new();
    for s in p.stages.values() {
        let print = s
            .component
            .hooks()
            .fingerprint()
            .map_err(|source| ReloadError::Stage {
                stage: s.name.clone(),
                source,
            })?;
        if let Some(print) = print {
            prints.insert(s.name.clone(), print);
        }
    }
    Ok(prints)
}
