//! One module per command.

mod commit;
mod container;
mod df;
mod diff;
mod export;
mod fsck;
mod gc;
mod images;
mod import;
mod merge;
mod pull;
mod push;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use strata_store::{OpenOptions, Store, Wait};
use strata_types::ImageName;

use crate::args::{Args, Command};

/// What every command gets: where the store is and how to talk.
pub struct Ctx {
    pub root: PathBuf,
    pub wait: Wait,
    pub json: bool,
}

impl Ctx {
    pub fn open(&self) -> anyhow::Result<Store> {
        Store::open(&self.root, OpenOptions { wait: self.wait })
            .with_context(|| format!("opening store {}", self.root.display()))
    }
}

pub fn name(s: &str) -> anyhow::Result<ImageName> {
    ImageName::new(s).map_err(anyhow::Error::from)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = Ctx {
        root: crate::default_root(args.root),
        wait: if args.no_wait { Wait::NoWait } else { Wait::Block },
        json: args.json,
    };
    match args.command {
        Command::Images => images::images(&ctx),
        Command::Layers => images::layers(&ctx),
        Command::Rmi { name } => images::rmi(&ctx, &name),
        Command::Container(c) => container::run(&ctx, c),
        Command::Df => df::run(&ctx),
        Command::Diff(a) => diff::run(&ctx, a),
        Command::Import { source, name } => import::run(&ctx, &source, name),
        Command::Commit { container, name } => commit::run(&ctx, &container, &name),
        Command::Export { image, dest, format } => export::run(&ctx, &image, &dest, format),
        Command::Gc { dry_run } => gc::run(&ctx, dry_run),
        Command::Fsck { full } => fsck::run(&ctx, full),
        Command::Merge { name, images, fail_on_conflict } => merge::merge(&ctx, &name, &images, fail_on_conflict),
        Command::Squash { image, name } => merge::squash(&ctx, &image, &name),
        Command::Pull { reference, name, plain_http, authfile } => {
            pull::run(&ctx, &reference, name, plain_http, authfile)
        }
        Command::Push { image, reference, format, plain_http, authfile } => {
            push::run(&ctx, &image, &reference, format, plain_http, authfile)
        }
    }
    .map(|()| ExitCode::SUCCESS)
}
