//! The `ingot` command: parse the command line, run it, print the error chain and exit with
//! 2 for bad input, 130 after Ctrl-C, 1 for any other failure.

use clap::Parser;

fn main() {
    let cli = match ingot::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    ingot::interrupt::install();
    if let Err(e) = ingot::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(ingot::cli::exit_code(&e));
    }
}
