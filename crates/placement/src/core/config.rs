//! The scheduler options, resolved: filter and weigher registries (Nova's class
//! names) and the option values, validated once at configuration time.

use super::error::{invalid, CoreResult};

/// One registry table for the filters: name, run_filter_once_per_request, RUN_ON_REBUILD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterKind {
    AllHosts,
    Compute,
    ComputeCapabilities,
    ImageProperties,
    GroupAntiAffinity,
    GroupAffinity,
    SameHost,
    DifferentHost,
    AggregateInstanceExtraSpecs,
    AggregateMultiTenancyIsolation,
    AggregateTypeAffinity,
    AggregateImagePropertiesIsolation,
    IsolatedHosts,
    IoOps,
    AggregateIoOps,
    NumInstances,
    AggregateNumInstances,
    Metrics,
}

const FILTERS: &[(FilterKind, &str, bool, bool)] = &[
    (FilterKind::AllHosts, "AllHostsFilter", true, false),
    (FilterKind::Compute, "ComputeFilter", true, false),
    (FilterKind::ComputeCapabilities, "ComputeCapabilitiesFilter", true, false),
    (FilterKind::ImageProperties, "ImagePropertiesFilter", true, true),
    (FilterKind::GroupAntiAffinity, "ServerGroupAntiAffinityFilter", false, false),
    (FilterKind::GroupAffinity, "ServerGroupAffinityFilter", false, false),
    (FilterKind::SameHost, "SameHostFilter", true, false),
    (FilterKind::DifferentHost, "DifferentHostFilter", true, false),
    (FilterKind::AggregateInstanceExtraSpecs, "AggregateInstanceExtraSpecsFilter", true, false),
    (FilterKind::AggregateMultiTenancyIsolation, "AggregateMultiTenancyIsolation", true, false),
    (FilterKind::AggregateTypeAffinity, "AggregateTypeAffinityFilter", true, false),
    (FilterKind::AggregateImagePropertiesIsolation, "AggregateImagePropertiesIsolation", true, true),
    (FilterKind::IsolatedHosts, "IsolatedHostsFilter", true, true),
    (FilterKind::IoOps, "IoOpsFilter", false, false),
    (FilterKind::AggregateIoOps, "AggregateIoOpsFilter", false, false),
    (FilterKind::NumInstances, "NumInstancesFilter", false, false),
    (FilterKind::AggregateNumInstances, "AggregateNumInstancesFilter", false, false),
    (FilterKind::Metrics, "MetricsFilter", false, false),
];

impl FilterKind {
    fn entry(self) -> &'static (FilterKind, &'static str, bool, bool) {
        FILTERS.iter().find(|e| e.0 == self).expect("registered")
    }
    pub fn name(self) -> &'static str {
        self.entry().1
    }
    pub fn once_per_request(self) -> bool {
        self.entry().2
    }
    pub fn run_on_rebuild(self) -> bool {
        self.entry().3
    }
    pub fn from_name(name: &str) -> Option<Self> {
        FILTERS.iter().find(|e| e.1 == name).map(|e| e.0)
    }
    pub fn all_names() -> Vec<&'static str> {
        FILTERS.iter().map(|e| e.1).collect()
    }
}

/// The 13 weighers of Nova 34. `minval` is the weigher's class attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeigherKind {
    Ram,
    Cpu,
    Disk,
    IoOps,
    NumInstances,
    HypervisorVersion,
    BuildFailure,
    CrossCell,
    Pci,
    SoftAffinity,
    SoftAntiAffinity,
    Metrics,
    ImageProperties,
}

pub const N_WEIGHERS: usize = 13;

const WEIGHERS: [(WeigherKind, &str, &str); N_WEIGHERS] = [
    (WeigherKind::Ram, "RAMWeigher", "ram_weight_multiplier"),
    (WeigherKind::Cpu, "CPUWeigher", "cpu_weight_multiplier"),
    (WeigherKind::Disk, "DiskWeigher", "disk_weight_multiplier"),
    (WeigherKind::IoOps, "IoOpsWeigher", "io_ops_weight_multiplier"),
    (WeigherKind::NumInstances, "NumInstancesWeigher", "num_instances_weight_multiplier"),
    (WeigherKind::HypervisorVersion, "HypervisorVersionWeigher", "hypervisor_version_weight_multiplier"),
    (WeigherKind::BuildFailure, "BuildFailureWeigher", "build_failure_weight_multiplier"),
    (WeigherKind::CrossCell, "CrossCellWeigher", "cross_cell_move_weight_multiplier"),
    (WeigherKind::Pci, "PCIWeigher", "pci_weight_multiplier"),
    (WeigherKind::SoftAffinity, "ServerGroupSoftAffinityWeigher", "soft_affinity_weight_multiplier"),
    (WeigherKind::SoftAntiAffinity, "ServerGroupSoftAntiAffinityWeigher", "soft_anti_affinity_weight_multiplier"),
    (WeigherKind::Metrics, "MetricsWeigher", "metrics_weight_multiplier"),
    (WeigherKind::ImageProperties, "ImagePropertiesWeigher", "image_props_weight_multiplier"),
];

impl WeigherKind {
    pub fn index(self) -> usize {
        WEIGHERS.iter().position(|e| e.0 == self).expect("registered")
    }
    pub fn name(self) -> &'static str {
        WEIGHERS[self.index()].1
    }
    /// The option name, which is also the aggregate metadata key that overrides it.
    pub fn option(self) -> &'static str {
        WEIGHERS[self.index()].2
    }
    pub fn from_name(name: &str) -> Option<Self> {
        WEIGHERS.iter().find(|e| e.1 == name).map(|e| e.0)
    }
    pub fn from_option(option: &str) -> Option<Self> {
        WEIGHERS.iter().find(|e| e.2 == option).map(|e| e.0)
    }
    pub fn all() -> impl Iterator<Item = WeigherKind> {
        WEIGHERS.iter().map(|e| e.0)
    }
    pub fn minval(self) -> Option<f64> {
        match self {
            WeigherKind::Ram | WeigherKind::Cpu | WeigherKind::Disk | WeigherKind::IoOps => Some(0.0),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub filters: Vec<FilterKind>,
    pub weighers: Vec<WeigherKind>,
    pub host_subset_size: usize,
    pub shuffle_best_same_weighed_hosts: bool,
    pub max_io_ops_per_host: i64,
    pub max_instances_per_host: i64,
    /// Option value per weigher, indexed by `WeigherKind::index`.
    pub multipliers: [f64; N_WEIGHERS],
    pub image_props_weight_setting: Vec<(String, f64)>,
    pub image_properties_default_architecture: Option<String>,
    pub isolated_images: Vec<String>,
    pub isolated_hosts: Vec<String>,
    pub restrict_isolated_hosts_to_isolated_images: bool,
    pub aggregate_image_properties_isolation_namespace: Option<String>,
    pub aggregate_image_properties_isolation_separator: String,
    pub max_attempts: usize,
    pub metrics_weight_setting: Vec<(String, f64)>,
    pub metrics_required: bool,
    pub metrics_weight_of_unavailable: f64,
    pub default_availability_zone: String,
}

impl Default for Config {
    fn default() -> Self {
        let mut multipliers = [1.0; N_WEIGHERS];
        multipliers[WeigherKind::IoOps.index()] = -1.0;
        multipliers[WeigherKind::NumInstances.index()] = 0.0;
        multipliers[WeigherKind::BuildFailure.index()] = 1_000_000.0;
        multipliers[WeigherKind::CrossCell.index()] = 1_000_000.0;
        multipliers[WeigherKind::ImageProperties.index()] = 0.0;
        Config {
            filters: vec![
                FilterKind::Compute,
                FilterKind::ComputeCapabilities,
                FilterKind::ImageProperties,
                FilterKind::GroupAntiAffinity,
                FilterKind::GroupAffinity,
            ],
            weighers: WeigherKind::all().collect(),
            host_subset_size: 1,
            shuffle_best_same_weighed_hosts: false,
            max_io_ops_per_host: 8,
            max_instances_per_host: 50,
            multipliers,
            image_props_weight_setting: Vec::new(),
            image_properties_default_architecture: None,
            isolated_images: Vec::new(),
            isolated_hosts: Vec::new(),
            restrict_isolated_hosts_to_isolated_images: true,
            aggregate_image_properties_isolation_namespace: None,
            aggregate_image_properties_isolation_separator: ".".into(),
            max_attempts: 3,
            metrics_weight_setting: Vec::new(),
            metrics_required: true,
            metrics_weight_of_unavailable: -10000.0,
            default_availability_zone: "nova".into(),
        }
    }
}

impl Config {
    pub fn multiplier(&self, w: WeigherKind) -> f64 {
        self.multipliers[w.index()]
    }

    pub fn set_filters(&mut self, names: &[String]) -> CoreResult<()> {
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let Some(f) = FilterKind::from_name(n) else {
                return invalid(format!(
                    "enabled_filters: unknown filter {n:?} (available: {})",
                    FilterKind::all_names().join(", ")
                ));
            };
            if out.contains(&f) {
                return invalid(format!("enabled_filters: {n:?} is listed twice"));
            }
            out.push(f);
        }
        self.filters = out;
        Ok(())
    }

    pub fn set_weighers(&mut self, names: &[String]) -> CoreResult<()> {
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let Some(w) = WeigherKind::from_name(n) else {
                return invalid(format!("weight_classes: unknown weigher {n:?}"));
            };
            if out.contains(&w) {
                return invalid(format!("weight_classes: {n:?} is listed twice"));
            }
            out.push(w);
        }
        self.weighers = out;
        Ok(())
    }

    /// Checks the values Nova's option definitions would refuse.
    pub fn validate(&self) -> CoreResult<()> {
        if self.host_subset_size < 1 {
            return invalid("host_subset_size: must be >= 1");
        }
        if self.max_attempts < 1 {
            return invalid("max_attempts: must be >= 1");
        }
        for w in WeigherKind::all() {
            let m = self.multiplier(w);
            if !m.is_finite() {
                return invalid(format!("{}: must be finite, got {m}", w.option()));
            }
        }
        for w in [WeigherKind::Pci, WeigherKind::SoftAffinity, WeigherKind::SoftAntiAffinity] {
            if self.multiplier(w) < 0.0 {
                return invalid(format!("{}: must be >= 0", w.option()));
            }
        }
        if !self.metrics_weight_of_unavailable.is_finite() {
            return invalid("metrics_weight_of_unavailable: must be finite");
        }
        for (name, v) in self.metrics_weight_setting.iter().chain(&self.image_props_weight_setting) {
            if !v.is_finite() {
                return invalid(format!("weight setting {name:?}: must be finite"));
            }
        }
        if let Some(arch) = &self.image_properties_default_architecture {
            super::request::canonical_arch(arch).map_err(|_| {
                super::error::CoreError::InvalidInput(format!(
                    "image_properties_default_architecture: unknown architecture {arch:?}"
                ))
            })?;
        }
        Ok(())
    }
}
