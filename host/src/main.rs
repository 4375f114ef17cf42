//! The `sluice` binary: parses the command line and hands over to [`sluice::cli`].

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
