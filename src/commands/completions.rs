//! `hoist completions SHELL`: completions for bash, zsh, fish, elvish, powershell.

use clap::CommandFactory;

pub(crate) fn run(shell: clap_complete::Shell) -> crate::exit::Exit {
    clap_complete::generate(
        shell,
        &mut crate::cli::Cli::command(),
        "hoist",
        &mut std::io::stdout(),
    );
    crate::exit::Exit::Ok
}
