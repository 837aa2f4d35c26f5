//! The scheduler's configuration, modelled on KubeSchedulerConfiguration:
//! profiles, each a `schedulerName` with the plugins it runs at each extension
//! point (on top of the default set), their weights and their args. Plugins
//! outside the default set are named in `plugins` with where they come from
//! (a file, or an OCI reference).
//!
//! ```yaml
//! apiVersion: kubescheduler.config.k8s.io/v1
//! kind: KubeSchedulerConfiguration
//! plugins:
//! - {name: PreferEdge, file: /opt/plugins/prefer_edge.wasm}
//! profiles:
//! - schedulerName: default-scheduler
//! - schedulerName: edge-scheduler
//!   plugins:
//!     score:
//!       enabled: [{name: PreferEdge, weight: 5}]
//!       disabled: [{name: NodeResourcesBalancedAllocation}]
//!   pluginConfig:
//!   - {name: PreferEdge, args: {}}
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The name of the profile pods get without `spec.schedulerName`.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// The default filter plugins, in the order they run.
const DEFAULT_FILTERS: &[&str] = &[
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodeResourcesFit",
    "PodTopologySpread",
];

/// The default score plugins and their weights (kube-scheduler's).
const DEFAULT_SCORES: &[(&str, i64)] = &[
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodeResourcesFit", 1),
    ("PodTopologySpread", 2),
    ("NodeResourcesBalancedAllocation", 1),
];

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// `kubescheduler.config.k8s.io/v1` (or absent).
    #[serde(default)]
    pub api_version: Option<String>,
    /// `KubeSchedulerConfiguration` (or absent).
    #[serde(default)]
    pub kind: Option<String>,
    /// The share of nodes to find feasible before scoring (1-100); 0 or absent
    /// picks it from the cluster's size as kube-scheduler does.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Plugins beyond the default set, and where they come from.
    #[serde(default)]
    pub plugins: Vec<Source>,
    /// The profiles; none means one, `default-scheduler`, with the defaults.
    #[serde(default)]
    pub profiles: Vec<Profile>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_version: None,
            kind: None,
            percentage_of_nodes_to_score: None,
            plugins: Vec::new(),
            profiles: vec![Profile::default()],
        }
    }
}

/// Where a plugin's component comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// The name profiles use.
    pub name: String,
    /// A `.wasm` file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An OCI reference (`REGISTRY/NAME:TAG`), pulled at start.
    #[serde(default)]
    pub image: Option<String>,
}

/// A profile.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// The `spec.schedulerName` of the pods it places.
    #[serde(default = "default_scheduler")]
    pub scheduler_name: String,
    /// Changes to the default plugins, per extension point.
    #[serde(default)]
    pub plugins: Points,
    /// Plugins' args.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            scheduler_name: default_scheduler(),
            plugins: Points::default(),
            plugin_config: Vec::new(),
        }
    }
}

fn default_scheduler() -> String {
    DEFAULT_SCHEDULER.into()
}

/// The extension points a profile changes. Pre-filter, reserve and permit run
/// on every plugin the profile has.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Points {
    /// Changes at both filter and score.
    #[serde(default)]
    pub multi_point: Set,
    /// Changes at filter.
    #[serde(default)]
    pub filter: Set,
    /// Changes at score.
    #[serde(default)]
    pub score: Set,
}

/// Plugins enabled and disabled at an extension point.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Set {
    /// Added after the defaults (or given a new weight).
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    /// Taken out of the defaults; `*` takes out all of them.
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

/// A plugin at an extension point.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// Its name.
    pub name: String,
    /// Its weight, at score (default 1).
    #[serde(default)]
    pub weight: Option<i64>,
}

/// A plugin's args in a profile.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The plugin.
    pub name: String,
    /// Its args.
    #[serde(default)]
    pub args: serde_json::Value,
}

/// A profile's plugins: filters in order, and scores with weights.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The filter plugins, in order.
    pub filters: Vec<String>,
    /// The score plugins and their weights.
    pub scores: Vec<(String, i64)>,
}

impl Plan {
    /// Every plugin of the plan, once each, filters first.
    pub fn plugins(&self) -> Vec<String> {
        let mut all = self.filters.clone();
        for (name, _) in &self.scores {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        all
    }
}

fn apply(set: &Set, filters: Option<&mut Vec<String>>, scores: Option<&mut Vec<(String, i64)>>) {
    let off = |name: &str| set.disabled.iter().any(|d| d.name == "*" || d.name == name);
    if let Some(f) = filters {
        f.retain(|n| !off(n));
        for p in &set.enabled {
            if !f.contains(&p.name) {
                f.push(p.name.clone());
            }
        }
    }
    if let Some(s) = scores {
        s.retain(|(n, _)| !off(n));
        for p in &set.enabled {
            let weight = p.weight.unwrap_or(1);
            match s.iter_mut().find(|(n, _)| *n == p.name) {
                Some(entry) => entry.1 = p.weight.unwrap_or(entry.1),
                None => s.push((p.name.clone(), weight)),
            }
        }
    }
}

impl Profile {
    /// The plugins the profile runs: the defaults with its changes.
    pub fn plan(&self) -> Plan {
        let mut filters: Vec<String> = DEFAULT_FILTERS.iter().map(|n| n.to_string()).collect();
        let mut scores: Vec<(String, i64)> = DEFAULT_SCORES
            .iter()
            .map(|(n, w)| (n.to_string(), *w))
            .collect();
        apply(
            &self.plugins.multi_point,
            Some(&mut filters),
            Some(&mut scores),
        );
        apply(&self.plugins.filter, Some(&mut filters), None);
        apply(&self.plugins.score, None, Some(&mut scores));
        Plan { filters, scores }
    }

    /// The args of the plugin `name` (`{}` when none).
    pub fn args(&self, name: &str) -> String {
        self.plugin_config
            .iter()
            .find(|c| c.name == name)
            .filter(|c| !c.args.is_null())
            .map_or_else(|| "{}".into(), |c| c.args.to_string())
    }
}

impl Config {
    /// The configuration in `file` (YAML or JSON), or the defaults without
    /// one; an error names the file.
    pub fn read(file: Option<&Path>) -> Result<Config, String> {
        let Some(file) = file else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Reads a configuration (YAML or JSON); an error names the field.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        if config.profiles.is_empty() {
            config.profiles.push(Profile::default());
        }
        if let Some(p) = config.percentage_of_nodes_to_score.filter(|p| *p > 100) {
            return Err(format!("percentageOfNodesToScore: {p} is over 100"));
        }
        let mut names: Vec<&str> = config
            .profiles
            .iter()
            .map(|p| p.scheduler_name.as_str())
            .collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "profiles: schedulerName {:?} is given twice",
                twice[0]
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_change_the_defaults() {
        let config = Config::parse(
            "
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
plugins: [{name: PreferEdge, file: /p.wasm}]
profiles:
- schedulerName: default-scheduler
- schedulerName: edge
  plugins:
    multiPoint: {disabled: [{name: PodTopologySpread}]}
    filter: {disabled: [{name: NodeName}]}
    score:
      enabled: [{name: PreferEdge, weight: 5}, {name: NodeAffinity, weight: 7}]
      disabled: [{name: NodeResourcesBalancedAllocation}]
  pluginConfig: [{name: PreferEdge, args: {tier: edge}}]
",
        )
        .unwrap();
        assert_eq!(
            config.profiles[0].plan().filters.len(),
            DEFAULT_FILTERS.len()
        );
        let edge = &config.profiles[1];
        let plan = edge.plan();
        assert_eq!(
            plan.filters,
            [
                "NodeUnschedulable",
                "TaintToleration",
                "NodeAffinity",
                "NodeResourcesFit"
            ]
        );
        assert_eq!(
            plan.scores,
            [
                ("TaintToleration".to_string(), 3),
                ("NodeAffinity".to_string(), 7),
                ("NodeResourcesFit".to_string(), 1),
                ("PreferEdge".to_string(), 5),
            ]
        );
        assert_eq!(edge.args("PreferEdge"), r#"{"tier":"edge"}"#);
        assert_eq!(edge.args("NodeAffinity"), "{}");
        let only = Set {
            enabled: vec![],
            disabled: vec![PluginRef {
                name: "*".into(),
                weight: None,
            }],
        };
        let mut scores = vec![("A".to_string(), 1)];
        apply(&only, None, Some(&mut scores));
        assert!(scores.is_empty());
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let err = Config::parse("profiles: [{schedulerName: a, plugin: {}}]").unwrap_err();
        assert!(err.starts_with("profiles[0]"), "{err}");
        let err = Config::parse("profiles: [{schedulerName: a}, {schedulerName: a}]").unwrap_err();
        assert!(err.contains("given twice"), "{err}");
        let err = Config::parse("percentageOfNodesToScore: 120").unwrap_err();
        assert!(err.contains("over 100"), "{err}");
        assert_eq!(
            Config::parse("{}").unwrap().profiles[0].scheduler_name,
            DEFAULT_SCHEDULER
        );
    }

    #[test]
    fn a_configuration_is_read_from_its_file_or_is_the_default() {
        assert_eq!(Config::read(None).unwrap().profiles.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scheduler.yaml");
        let err = Config::read(Some(&file)).unwrap_err();
        assert!(
            err.starts_with("reading ") && err.contains("scheduler.yaml"),
            "{err}"
        );
        std::fs::write(&file, "percentageOfNodesToScore: 120").unwrap();
        let err = Config::read(Some(&file)).unwrap_err();
        assert!(
            err.contains("scheduler.yaml: ") && err.contains("over 100"),
            "{err}"
        );
    }
}
