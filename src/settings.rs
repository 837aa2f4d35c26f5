//! Where flags come from, highest first: the command line, then an
//! environment variable per flag (`--data-dir` is `WASMKUBE_DATA_DIR`), then
//! a config file (`WASMKUBE_CONFIG`, else `/etc/wasmkube/config.yaml`)
//! whose keys are flag names, then the flags' own defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};

use crate::exit::Failure;

/// The config file read when `WASMKUBE_CONFIG` names none.
const DEFAULT_CONFIG: &str = "/etc/wasmkube/config.yaml";

/// The text after the top-level `--help`.
pub const AFTER_HELP: &str = "Flags can also be set by environment variables (WASMKUBE_ and the \
flag's name: WASMKUBE_DATA_DIR=/var/lib/wasmkube) and in a YAML config file of flag names and \
values (WASMKUBE_CONFIG, else /etc/wasmkube/config.yaml), e.g.\n  data-dir: /var/lib/wasmkube\n  \
node-name: edge-1\nThe command line wins over the environment, which wins over the file.\n\n\
Client commands (run, push, plugin, get, describe, apply, delete, logs, token) find the cluster \
as kubectl does: --kubeconfig FILE, else KUBECONFIG, else ~/.kube/config, else the \
wasmkube-data/kubeconfig that `wasmkube up` writes here.\n\nExit codes: 0 done; 1 failed or \
refused by the cluster; 2 bad usage; 3 not found; 4 no cluster to reach.";

/// The command line of `C`, with an environment variable for every flag and
/// the config file's values as defaults.
pub fn command<C: CommandFactory>() -> Result<clap::Command> {
    let file = config_file()?;
    let command = configure(C::command(), &file);
    let known = flags(&command);
    if let Some(unknown) = file.keys().find(|k| !known.contains(*k)) {
        return Err(Failure::Usage.because(format!(
            "{}: no command takes --{unknown}",
            config_path().display()
        )));
    }
    Ok(command)
}

/// Parses the process's arguments into `C`.
pub fn parse<C: CommandFactory + FromArgMatches>() -> Result<C, clap::Error> {
    let mut command = match command::<C>() {
        Ok(command) => command,
        Err(e) => {
            let mut plain = C::command();
            return Err(plain.error(clap::error::ErrorKind::InvalidValue, format!("{e:#}")));
        }
    };
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    C::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

fn config_path() -> PathBuf {
    std::env::var_os("WASMKUBE_CONFIG").map_or_else(|| DEFAULT_CONFIG.into(), PathBuf::from)
}

/// The config file's flags and values (none when there is no file).
fn config_file() -> Result<BTreeMap<String, String>> {
    let path = config_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Failure::Usage.because(format!("{}: {e}", path.display()))),
    };
    let values: BTreeMap<String, serde_yaml_ng::Value> =
        serde_yaml_ng::from_str(&text).map_err(|e| {
            Failure::Usage.because(format!(
                "{}: expected flag names and values: {e}",
                path.display()
            ))
        })?;
    values
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                serde_yaml_ng::Value::String(s) => s,
                serde_yaml_ng::Value::Bool(b) => b.to_string(),
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                serde_yaml_ng::Value::Sequence(items) => items
                    .iter()
                    .filter_map(|i| serde_yaml_ng::to_string(i).ok())
                    .map(|i| i.trim().to_owned())
                    .collect::<Vec<_>>()
                    .join(","),
                _ => {
                    return Err(Failure::Usage.because(format!(
                        "{}: {key} must be a string, number, boolean or list",
                        path.display()
                    )));
                }
            };
            Ok((key, text))
        })
        .collect()
}

/// `command` and its subcommands with an environment variable for each
/// flag and `file`'s values as defaults.
fn configure(mut command: clap::Command, file: &BTreeMap<String, String>) -> clap::Command {
    let flags: Vec<(clap::Id, String)> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_id().clone(), a.get_long()?.to_owned())))
        .filter(|(_, long)| long != "help" && long != "version")
        .collect();
    for (id, long) in flags {
        command = command.mut_arg(id, |arg| {
            let variable = format!("WASMKUBE_{}", long.to_uppercase().replace('-', "_"));
            let arg = arg.env(variable);
            match file.get(&long) {
                Some(value) => arg.default_value(value.clone()),
                None => arg,
            }
        });
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| configure(sub, file));
    }
    command
}

/// Every flag name of `command` and its subcommands.
fn flags(command: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    for sub in command.get_subcommands() {
        names.extend(flags(sub));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Up {
            #[arg(long, default_value = "wasmkube-data")]
            data_dir: String,
            #[arg(long)]
            node_name: Option<String>,
        },
    }

    fn parsed(file: &[(&str, &str)], args: &[&str]) -> (String, Option<String>) {
        let file = file
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut command = configure(Test::command(), &file);
        let matches = command.try_get_matches_from_mut(args).unwrap();
        let Sub::Up {
            data_dir,
            node_name,
        } = Test::from_arg_matches(&matches).unwrap().command;
        (data_dir, node_name)
    }

    #[test]
    fn the_command_line_wins_over_the_file_which_wins_over_defaults() {
        assert_eq!(parsed(&[], &["t", "up"]), ("wasmkube-data".into(), None));
        let file = [("data-dir", "/var/lib/wasmkube"), ("node-name", "edge-1")];
        assert_eq!(
            parsed(&file, &["t", "up"]),
            ("/var/lib/wasmkube".into(), Some("edge-1".into()))
        );
        assert_eq!(
            parsed(&file, &["t", "up", "--node-name", "edge-2"]),
            ("/var/lib/wasmkube".into(), Some("edge-2".into()))
        );
        let command = configure(Test::command(), &BTreeMap::new());
        let up = command.find_subcommand("up").unwrap();
        let env: Vec<String> = up
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(env, ["WASMKUBE_DATA_DIR", "WASMKUBE_NODE_NAME"]);
    }
}
