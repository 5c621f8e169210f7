//! The state of tasks in the transaction: changed snapshots written to the
//! changelog at each commit, read back for partitions this process is
//! assigned, forgotten for those it gives away.

use std::sync::Arc;

use super::super::changelog::{self, CHECKPOINT_HEADER};
use super::super::delivery::FirstFailure;
use super::{ExactlyOnce, OUTAGE};
use crate::checkpoint::{Saved, SavedStage};

impl ExactlyOnce {
    /// Adds the state records of the changed snapshots to the transaction:
    /// a stage's own state to changelog partition 0, each task's to its
    /// partition.
    pub(super) fn write_states(
        &self,
        id: u64,
        saved: &Saved,
    ) -> Result<Vec<(String, SavedStage)>, String> {
        let committed = self.committed_states.lock().expect("states lock").clone();
        let failures = Arc::new(FirstFailure::default());
        let mut written = Vec::new();
        for (stage, state) in &saved.stages {
            let own = (None, state.without_tasks());
            let tasks = state.tasks.iter().map(|(p, t)| (Some(*p), t.clone()));
            for (partition, state) in std::iter::once(own).chain(tasks) {
                let key = changelog::key(stage, partition);
                if committed.get(&key) == Some(&state) {
                    continue;
                }
                let target = partition.unwrap_or(0);
                if target >= self.changelog_partitions {
                    return Err(format!(
                        "task of partition {target} of `{stage}` has no changelog partition (the changelog has {})",
                        self.changelog_partitions
                    ));
                }
                let id_text = id.to_string();
                changelog::send(
                    &self.producer,
                    changelog::StateRecord {
                        topic: &self.settings.changelog,
                        partition: target,
                        key: &key,
                        state: &state,
                        header: (CHECKPOINT_HEADER, id_text.as_bytes()),
                    },
                    failures.clone(),
                )?;
                written.push((key, state));
            }
        }
        Ok(written)
    }

    /// The state the tasks of input `partitions` start from in this
    /// process: every stage's last committed record for them (stage, partition, state).
    pub fn restore_tasks(
        &self,
        partitions: &[i32],
    ) -> Result<Vec<(String, i32, SavedStage)>, String> {
        let wanted: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| *p < self.changelog_partitions)
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let found = changelog::read(
            &self.bootstrap,
            &self.settings.client,
            &format!("{}-restore", self.settings.transactional_id),
            &self.settings.changelog,
            &wanted,
            OUTAGE,
        )?;
        let mut committed = self.committed_states.lock().expect("states lock");
        let mut states = Vec::new();
        for (key, state) in found.states {
            // A record an at-least-once run of this pipeline left is not
            // committed state.
            if found.positions.contains_key(&key) {
                continue;
            }
            if let (stage, Some(p)) = changelog::parse_key(&key)
                && wanted.contains(&p)
            {
                committed.insert(key, state.clone());
                states.push((stage, p, state));
            }
        }
        Ok(states)
    }

    /// This process no longer owns input `partitions`: what it remembers
    /// committing for their tasks is forgotten (their next owner writes
    /// their state).
    pub fn forget_tasks(&self, partitions: &[i32]) {
        self.committed_states.lock().expect("states lock").retain(
            |key, _| !matches!(changelog::parse_key(key).1, Some(p) if partitions.contains(&p)),
        );
    }
}
