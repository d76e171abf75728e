//! The checker of docs/tour.md: its ```console blocks are run and their output compared, so the
//! tour cannot drift from the program.
//!
//! In a block, a line `$ CMD` is a command (words split as a shell would, with '' and ""
//! quoting; no pipes or variables) and the lines up to the next `$ ` are its expected output,
//! stdout then stderr. A last line `[exit N]` says the command exits with N (else it must
//! succeed). Expected lines match whole actual lines; runs of two or more spaces match any run
//! of spaces (table columns), and these placeholders match what changes between runs:
//!
//! | placeholder | matches |
//! |---|---|
//! | `<id>` | a 12- or 64-hex-digit id |
//! | `<digest>` | `sha256:` and 64 hex digits |
//! | `<version>` | a kernel-style version, `6.1.0-28-amd64` |
//! | `<any>` | any text (times, sizes) |
//! | `<version:NAME>` | a version, remembered as NAME (the same NAME later must match the same text) |
//! | `<version:!NAME>` | a version different from the one remembered as NAME |
//!
//! A block whose info string carries a tag (```` ```console rig ````) runs only where that tag
//! is asked for (the VM block runs in the nested rig, tests/vm/tour.sh).

use std::collections::HashMap;

use regex::Regex;

/// One command and what it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the `$` line in the document.
    pub line: usize,
    pub command: String,
    pub expected: Vec<String>,
    pub exit: i32,
}

/// One ```console block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The word after `console` in the info string, if any.
    pub tag: Option<String>,
    pub steps: Vec<Step>,
}

/// The console blocks of a Markdown document, in order.
pub fn parse(markdown: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, raw) in markdown.lines().enumerate() {
        let line = raw.trim_end();
        match &mut current {
            None => {
                if let Some(info) = line.strip_prefix("```console") {
                    current = Some(Block {
                        tag: info.split_whitespace().next().map(str::to_string),
                        steps: Vec::new(),
                    });
                }
            }
            Some(block) => {
                if line == "```" {
                    blocks.push(current.take().unwrap_or_else(|| unreachable!()));
                } else if let Some(cmd) = line.strip_prefix("$ ") {
                    block.steps.push(Step {
                        line: i + 1,
                        command: cmd.to_string(),
                        expected: Vec::new(),
                        exit: 0,
                    });
                } else {
                    let step = block
                        .steps
                        .last_mut()
                        .ok_or_else(|| format!("line {}: output before any `$ ` command", i + 1))?;
                    if let Some(code) = line
                        .strip_prefix("[exit ")
                        .and_then(|r| r.strip_suffix(']'))
                    {
                        step.exit = code
                            .parse()
                            .map_err(|_| format!("line {}: bad exit status '{code}'", i + 1))?;
                    } else {
                        step.expected.push(line.to_string());
                    }
                }
            }
        }
    }
    if current.is_some() {
        return Err("a ```console block is not closed".into());
    }
    Ok(blocks)
}

/// Splits a command line into words: whitespace separates, '...' and "..." quote.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unclosed {c} in: {line}")),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '|' | '>' | '<' | '$' | ';' | '&' | '`' => {
                return Err(format!(
                    "'{c}' needs a shell, which the tour does not use: {line}"
                ))
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// One placeholder in a compiled line.
enum Capture {
    Remember(String),
    Differ(String),
}

/// An expected line as a regex, and what its capture groups mean.
fn compile(line: &str) -> Result<(Regex, Vec<Capture>), String> {
    let token = Regex::new(r"<(id|digest|version|any)(?::(!?)([A-Za-z_]+))?>|\s{2,}")
        .map_err(|e| e.to_string())?;
    let mut pattern = String::from("^");
    let mut captures = Vec::new();
    let mut last = 0;
    for m in token.captures_iter(line) {
        let whole = m.get(0).unwrap_or_else(|| unreachable!());
        pattern.push_str(&regex::escape(&line[last..whole.start()]));
        last = whole.end();
        let Some(kind) = m.get(1) else {
            pattern.push_str(r"\s+");
            continue;
        };
        let body = match kind.as_str() {
            "id" => "[0-9a-f]{64}|[0-9a-f]{12}",
            "digest" => "sha256:[0-9a-f]{64}",
            "version" => r"\d+(?:\.\d+)+\S*",
            _ => ".*?",
        };
        match m.get(3) {
            Some(name) => {
                let name = name.as_str().to_string();
                captures.push(if m.get(2).is_some_and(|b| b.as_str() == "!") {
                    Capture::Differ(name)
                } else {
                    Capture::Remember(name)
                });
                pattern.push_str(&format!("({body})"));
            }
            None => pattern.push_str(&format!("(?:{body})")),
        }
    }
    pattern.push_str(&regex::escape(&line[last..]));
    pattern.push('$');
    let re = Regex::new(&pattern).map_err(|e| format!("cannot compile '{line}': {e}"))?;
    Ok((re, captures))
}

/// Compares `actual` with the expected lines; `vars` holds the remembered placeholders.
pub fn check_output(
    expected: &[String],
    actual: &str,
    vars: &mut HashMap<String, String>,
) -> Result<(), String> {
    let actual: Vec<&str> = actual.lines().map(str::trim_end).collect();
    let show = || {
        format!(
            "expected:\n{}\nactual:\n{}",
            expected.join("\n"),
            actual.join("\n")
        )
    };
    if actual.len() != expected.len() {
        return Err(format!(
            "{} lines of output, the tour shows {}\n{}",
            actual.len(),
            expected.len(),
            show()
        ));
    }
    for (want, got) in expected.iter().zip(&actual) {
        let (re, captures) = compile(want)?;
        let m = re
            .captures(got)
            .ok_or_else(|| format!("line '{got}' does not match '{want}'\n{}", show()))?;
        for (i, c) in captures.iter().enumerate() {
            let value = m.get(i + 1).map_or("", |g| g.as_str()).to_string();
            match c {
                Capture::Remember(name) => match vars.get(name) {
                    Some(old) if *old != value => {
                        return Err(format!("<{name}> was '{old}', now '{value}' in '{got}'"))
                    }
                    Some(_) => {}
                    None => {
                        vars.insert(name.clone(), value);
                    }
                },
                Capture::Differ(name) => {
                    let old = vars
                        .get(name)
                        .ok_or_else(|| format!("<...:!{name}> before any <...:{name}>"))?;
                    if *old == value {
                        return Err(format!("'{value}' should differ from <{name}> in '{got}'"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs the steps of every block whose tag is `tag` (None: the untagged blocks) through
/// `run(words) -> (stdout + stderr, exit code)`; returns how many commands ran.
pub fn run_blocks(
    blocks: &[Block],
    tag: Option<&str>,
    run: &mut dyn FnMut(&[String]) -> (String, i32),
) -> Result<usize, String> {
    let mut vars = HashMap::new();
    let mut count = 0;
    for block in blocks.iter().filter(|b| b.tag.as_deref() == tag) {
        for step in &block.steps {
            let words =
                split_words(&step.command).map_err(|e| format!("line {}: {e}", step.line))?;
            let (output, code) = run(&words);
            if code != step.exit {
                return Err(format!(
                    "line {}: `{}` exited with {code}, the tour says {}; it printed:\n{output}",
                    step.line, step.command, step.exit
                ));
            }
            check_output(&step.expected, &output, &mut vars)
                .map_err(|e| format!("line {}: `{}`: {e}", step.line, step.command))?;
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "intro\n```console\n$ nook images\nREPOSITORY   TAG\nbusybox      latest\n\
                       $ nook run --rm busybox sh -c 'cat /x'\ncat: no\n[exit 1]\n```\n\
                       ```console rig\n$ uname -r\n<version:host>\n```\n";

    #[test]
    fn blocks_steps_and_exit_codes_are_parsed() {
        let blocks = parse(DOC).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].tag, None);
        assert_eq!(blocks[1].tag.as_deref(), Some("rig"));
        let s = &blocks[0].steps;
        assert_eq!(
            (
                s[0].line,
                s[0].command.as_str(),
                s[0].expected.len(),
                s[0].exit
            ),
            (3, "nook images", 2, 0)
        );
        assert_eq!(s[1].exit, 1);
        assert_eq!(
            split_words(&s[1].command).unwrap(),
            ["nook", "run", "--rm", "busybox", "sh", "-c", "cat /x"]
        );
        assert!(split_words("nook ps | head").is_err());
        assert!(parse("```console\nno command\n```\n").is_err());
        assert!(parse("```console\n$ x\n").is_err());
    }

    #[test]
    fn placeholders_and_columns_match_what_changes() {
        let mut vars = HashMap::new();
        let want = |lines: &[&str]| lines.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        check_output(
            &want(&["busybox  latest  <id>  <any>  2.13MB", "Created: <digest>"]),
            &format!(
                "busybox   latest   c4635f9da6dd   6 months ago   2.13MB\nCreated: sha256:{}\n",
                "a".repeat(64)
            ),
            &mut vars,
        )
        .unwrap();
        assert!(check_output(&want(&["<id>"]), "xyz\n", &mut vars).is_err());
        assert!(check_output(&want(&["a", "b"]), "a\n", &mut vars).is_err());
        check_output(&want(&["<version:host>"]), "6.1.0-28-amd64\n", &mut vars).unwrap();
        check_output(&want(&["<version:host>"]), "6.1.0-28-amd64\n", &mut vars).unwrap();
        assert!(check_output(&want(&["<version:host>"]), "6.1.1\n", &mut vars).is_err());
        check_output(&want(&["<version:!host>"]), "6.1.158\n", &mut vars).unwrap();
        assert!(check_output(&want(&["<version:!host>"]), "6.1.0-28-amd64\n", &mut vars).is_err());
    }

    #[test]
    fn commands_run_in_order_and_failures_name_the_line() {
        let blocks = parse(DOC).unwrap();
        let mut seen = Vec::new();
        let n = run_blocks(&blocks, None, &mut |w| {
            seen.push(w.join(" "));
            match w[1].as_str() {
                "images" => ("REPOSITORY  TAG\nbusybox  latest\n".into(), 0),
                _ => ("cat: no\n".into(), 1),
            }
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen, ["nook images", "nook run --rm busybox sh -c cat /x"]);
        let e = run_blocks(&blocks, None, &mut |_| (String::new(), 0)).unwrap_err();
        assert!(e.starts_with("line 3: `nook images`"), "{e}");
        let e = run_blocks(&blocks, Some("rig"), &mut |_| ("6.1\n".into(), 2)).unwrap_err();
        assert!(e.contains("exited with 2"), "{e}");
    }
}
