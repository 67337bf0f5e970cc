//! `tensorseal completions SHELL` and `tensorseal man`: generated from the
//! clap command tree with clap's own crates, so they never drift from `--help`.

use super::{write_stdout, CmdResult, Failure, EXIT_OK};

/// Arguments of `completions`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(clap::Args)]
pub struct ManArgs {
    /// A subcommand: print its page (tensorseal-SUBCOMMAND(1)) instead of
    /// the main one.
    pub subcommand: Option<String>,
}

pub fn completions(args: CompletionsArgs) -> CmdResult {
    let mut cmd = crate::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "tensorseal", &mut buf);
    write_stdout(&String::from_utf8_lossy(&buf))?;
    Ok(EXIT_OK)
}

pub fn man(args: ManArgs) -> CmdResult {
    let mut cmd = crate::command();
    cmd.build();
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => {
            let sub = cmd
                .find_subcommand(name)
                .ok_or_else(|| Failure::usage(anyhow::anyhow!("no subcommand {name:?}")))?;
            let full = format!("tensorseal-{}", sub.get_name());
            sub.clone()
                .name(full.clone())
                .bin_name(full)
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .map_err(Failure::usage)?;
    write_stdout(&String::from_utf8_lossy(&buf))?;
    Ok(EXIT_OK)
}
