//! Command-line arguments (the contract is `docs/cli.md`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "strata", version, about = "A chunk-deduplicating container layer store")]
pub struct Args {
    /// Store root (default: $STRATA_ROOT, else /var/lib/strata for root, else $XDG_DATA_HOME/strata).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Fail at once instead of waiting when the store's owner does not answer (starting or stopping).
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Layer output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[value(name = "tar")]
    Tar,
    #[value(name = "tar+gzip")]
    TarGzip,
    #[value(name = "tar+zstd")]
    TarZstd,
    #[value(name = "zstd:chunked")]
    ZstdChunked,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the changes of an overlay upperdir, an overlay mount, two trees, or two images as an OCI layer.
    Diff(DiffArgs),
    /// Import an image from an OCI image layout.
    Import {
        /// oci:PATH[:TAG]
        source: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull an image from a registry (zstd:chunked layers partially).
    Pull {
        /// host[:port]/repo[:tag|@digest]
        reference: String,
        #[arg(long)]
        name: Option<String>,
        /// Talk plain http to the registry (loopback registries).
        #[arg(long)]
        plain_http: bool,
        /// Docker-style auth file (default: $REGISTRY_AUTH_FILE, containers' auth.json, ~/.docker/config.json).
        #[arg(long)]
        authfile: Option<PathBuf>,
    },
    /// Push an image to a registry.
    Push {
        image: String,
        /// host[:port]/repo[:tag]
        reference: String,
        #[arg(long, value_enum, default_value = "zstd:chunked")]
        format: Format,
        #[arg(long)]
        plain_http: bool,
        #[arg(long)]
        authfile: Option<PathBuf>,
    },
    /// List images.
    Images,
    /// List layers.
    Layers,
    /// Remove an image (and the layers nothing else uses).
    Rmi { name: String },
    /// Create, mount, unmount and remove containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Store a container's changes as a new layer and image.
    Commit { container: String, name: String },
    /// Write an image as an OCI image layout.
    Export {
        image: String,
        /// oci:PATH[:TAG]
        dest: String,
        #[arg(long, value_enum, default_value = "zstd:chunked")]
        format: Format,
    },
    /// Stack the layers of several images into a new image, reporting conflicts.
    Merge {
        name: String,
        #[arg(required = true, num_args = 1..)]
        images: Vec<String>,
        #[arg(long)]
        fail_on_conflict: bool,
    },
    /// Make a one-layer image with the same root filesystem.
    Squash { image: String, name: String },
    /// Remove what no image, container or running operation uses (while everything else goes on).
    Gc {
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the store's consistency.
    Fsck {
        /// Verify every byte instead of a sample.
        #[arg(long)]
        full: bool,
    },
    /// Logical vs physical space.
    Df,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create a container on an image.
    Create { image: String, name: String },
    /// Mount a container; prints the merged directory.
    Mount { name: String },
    /// Unmount a container.
    Umount { name: String },
    /// Remove a container and its changes.
    Rm { name: String },
    /// List containers.
    List,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Store form: the two images to diff (IMAGE_A IMAGE_B).
    #[arg(num_args = 0..=2)]
    pub images: Vec<String>,
    /// Overlay upperdir.
    #[arg(long, requires = "lower", conflicts_with_all = ["base", "target", "mount"])]
    pub upper: Option<PathBuf>,
    /// Overlay lowerdir, top-most first (repeat).
    #[arg(long)]
    pub lower: Vec<PathBuf>,
    /// Base tree of a double walk.
    #[arg(long, requires = "target", conflicts_with = "mount")]
    pub base: Option<PathBuf>,
    /// Target tree of a double walk.
    #[arg(long, requires = "base")]
    pub target: Option<PathBuf>,
    /// An overlay mountpoint: upper and lowers come from its mount options.
    #[arg(long)]
    pub mount: Option<PathBuf>,
    /// Output file, `-` for stdout.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "tar")]
    pub format: Format,
}
