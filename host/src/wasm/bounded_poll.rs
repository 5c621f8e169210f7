//! `wasi:io/poll` under the call's deadline.
//!
//! Epoch interruption stops guest code at its deadline, but not a guest
//! blocked inside a host call: a plugin that sleeps (`time.sleep` in
//! Python, `std::thread::sleep` in Rust, a JavaScript timer) waits in
//! `poll` or `pollable.block` until its timer fires, however long that is.
//! These replace WASI's own versions in the linker: they wait at most until
//! the deadline of the call in progress, and then trap with
//! [`DeadlineReached`], which the instance reports as the call's timeout.

use std::time::Instant;

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::sync::io::poll::{Host, HostPollable};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll::{
    Host as AsyncHost, HostPollable as AsyncHostPollable,
};

/// The trap a wait past the call's deadline ends with.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the plugin waited past its call's deadline")]
pub struct DeadlineReached;

/// A plugin's resource table with the deadline of the call in progress
/// (`None`: no deadline, as in benchmarks without epoch checks).
pub(super) struct BoundedPoll<'a> {
    pub(super) table: &'a mut ResourceTable,
    pub(super) deadline: Option<Instant>,
}

/// Selects [`BoundedPoll`] as the host state of the poll interface.
pub(super) struct HasBoundedPoll;

impl HasData for HasBoundedPoll {
    type Data<'a> = BoundedPoll<'a>;
}

/// Runs `wait` until it ends or `deadline` passes.
fn bounded<T>(deadline: Option<Instant>, wait: impl Future<Output = T>) -> wasmtime::Result<T> {
    let Some(deadline) = deadline else {
        return Ok(in_tokio(wait));
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    in_tokio(async { tokio::time::timeout_at(deadline, wait).await })
        .map_err(|_| wasmtime::Error::new(DeadlineReached))
}

impl Host for BoundedPoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        bounded(self.deadline, AsyncHost::poll(self.table, pollables))?
    }
}

impl HostPollable for BoundedPoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        in_tokio(AsyncHostPollable::ready(self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        bounded(
            self.deadline,
            AsyncHostPollable::block(self.table, pollable),
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        AsyncHostPollable::drop(self.table, pollable)
    }
}
