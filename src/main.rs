use clap::Parser;
use opensandbox_volume::cli::{Cli, Command};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => opensandbox_volume::cli::run_serve(args).await,
        Command::Mount(args) => opensandbox_volume::cli::run_mount(args).await,
    };
    if let Err(e) = result {
        eprintln!("opensandbox-volume: {e:#}");
        std::process::exit(1);
    }
}
