//! The `opensandbox-volume` binary: bounds the allocator, parses the command
//! line and runs the chosen command (serve, mount, status, translate,
//! supervise).
#![deny(clippy::undocumented_unsafe_blocks)]

use clap::Parser;
use opensandbox_volume::cli::{Cli, Command};

/// Large buffers (fuser's 16 MiB request buffer per FUSE thread, 8 MiB
/// upload parts) must come from mmap and go back to the kernel when freed.
/// glibc's default threshold grows after the first large free, after which
/// such buffers are carved from the heap, zero-filled in full by calloc and
/// kept: that alone put a 1 GiB upload's peak RSS over 250 MiB. A fixed
/// threshold also turns off that adaptation.
fn bound_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        // Single-threaded on purpose, no runtime: it blocks signals to wait
        // for them, which only holds for a process with one thread.
        Command::Supervise => opensandbox_volume::supervisor::run(),
        // Pure and quick: no runtime; its own exit status (2: invalid input).
        Command::Translate(args) => {
            std::process::exit(opensandbox_volume::translate::run_translate(args))
        }
        // Reads files only; its exit status is the health verdict.
        Command::Status(args) => std::process::exit(opensandbox_volume::cli::run_status(args)),
        command => {
            bound_malloc();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("the tokio runtime starts");
            let result = rt.block_on(run(command));
            // Never shut the runtime down: that waits for every blocking
            // task, and a mount whose flush timed out still has uploads
            // retrying against a store that does not answer (their data is
            // journalled on disk). The process ends here, with the status.
            exit_with(result)
        }
    };
    exit_with(result)
}

/// Ends the process: status 0, or 1 with the error on stderr.
fn exit_with(result: anyhow::Result<()>) -> ! {
    if let Err(e) = result {
        eprintln!("opensandbox-volume: {e:#}");
        std::process::exit(1);
    }
    std::process::exit(0)
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => opensandbox_volume::cli::run_serve(args).await,
        Command::Mount(args) => opensandbox_volume::cli::run_mount(args).await,
        Command::Supervise | Command::Translate(_) | Command::Status(_) => {
            unreachable!("handled before the runtime starts")
        }
    }
}
