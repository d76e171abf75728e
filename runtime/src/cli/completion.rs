//! `nook completion bash|zsh|fish` prints a shell completion script, as `docker completion` does,
//! and the hidden `nook manpages DIR` writes man pages; both are generated from the CLI definition
//! itself, so they never drift from the verbs and flags. `install.sh` installs both.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::Cli;

/// The shells nook writes completions for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args)]
pub struct Args {
    /// The shell to print the completion script for
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// The directory to write nook.1 and one nook-VERB.1 per verb to (created if needed)
    dir: PathBuf,
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "nook", &mut out);
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::emit(&String::from_utf8_lossy(&script(args.shell)))
}

pub fn run_man(args: ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &args.dir)
        .with_context(|| format!("cannot write man pages to {}", args.dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shell_gets_a_script_that_knows_the_verbs() {
        for (shell, marker) in [
            (Shell::Bash, "complete -F"),
            (Shell::Zsh, "#compdef nook"),
            (Shell::Fish, "complete -c nook"),
        ] {
            let s = String::from_utf8(script(shell)).unwrap();
            assert!(s.contains(marker), "{marker} missing");
            for verb in [
                "run",
                "image",
                "completion",
                "version",
                "top",
                "system",
                "df",
            ] {
                assert!(s.contains(verb), "{verb} missing from the {marker} script");
            }
        }
    }

    #[test]
    fn man_pages_cover_every_verb() {
        let dir = tempfile::tempdir().unwrap();
        run_man(ManArgs {
            dir: dir.path().to_path_buf(),
        })
        .unwrap();
        for page in [
            "nook.1",
            "nook-run.1",
            "nook-image.1",
            "nook-version.1",
            "nook-top.1",
            "nook-system.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page))
                .unwrap_or_else(|e| panic!("{page}: {e}"));
            assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
        }
    }
}
