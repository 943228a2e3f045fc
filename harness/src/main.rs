//! The `harness` command: a thin CLI over the `hydra` library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
