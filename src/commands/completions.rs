use clap::CommandFactory;

pub fn run(shell: clap_complete::Shell) -> i32 {
    clap_complete::generate(
        shell,
        &mut crate::cli::Cli::command(),
        "hoist",
        &mut std::io::stdout(),
    );
    0
}
