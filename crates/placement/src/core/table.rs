//! The columnar host table: one contiguous column per attribute, one row per host,
//! a generation per row; plus the Placement ledger (consumers and their allocations).
//!
//! Every mutator validates all of its input before it writes anything, so a refused
//! call leaves the table exactly as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::col::Col;
use super::error::{invalid, CoreError, CoreResult};
use super::interner::Interner;

pub const N_RC: usize = 3;
pub const RC_NAMES: [&str; N_RC] = ["VCPU", "MEMORY_MB", "DISK_GB"];
pub const VCPU: usize = 0;
pub const MEMORY_MB: usize = 1;
pub const DISK_GB: usize = 2;
/// Placement keeps amounts and inventory sizes in 32-bit integer columns.
pub const MAX_AMOUNT: i64 = i32::MAX as i64;

pub fn rc_index(name: &str) -> CoreResult<usize> {
    RC_NAMES
        .iter()
        .position(|n| *n == name)
        .ok_or_else(|| CoreError::InvalidInput(format!("unknown resource class {name:?} (known: VCPU, MEMORY_MB, DISK_GB)")))
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inventory {
    pub total: i64,
    pub reserved: i64,
    pub allocation_ratio: f64,
    pub min_unit: i64,
    pub max_unit: i64,
    pub step_size: i64,
}

impl Inventory {
    /// Placement's `int((total - reserved) * allocation_ratio)`.
    pub fn capacity(&self) -> i64 {
        ((self.total - self.reserved) as f64 * self.allocation_ratio) as i64
    }

    pub fn validate(&self, what: &str) -> CoreResult<()> {
        if !(0..=MAX_AMOUNT).contains(&self.total) {
            return invalid(format!("{what}: total must be between 0 and {MAX_AMOUNT}, got {}", self.total));
        }
        if self.reserved < 0 || self.reserved > self.total {
            return invalid(format!("{what}: reserved must be between 0 and total ({}), got {}", self.total, self.reserved));
        }
        if !self.allocation_ratio.is_finite() || self.allocation_ratio <= 0.0 {
            return invalid(format!("{what}: allocation_ratio must be a finite number > 0, got {}", self.allocation_ratio));
        }
        if self.min_unit < 1 || self.min_unit > MAX_AMOUNT {
            return invalid(format!("{what}: min_unit must be between 1 and {MAX_AMOUNT}, got {}", self.min_unit));
        }
        if self.max_unit < self.min_unit || self.max_unit > MAX_AMOUNT {
            return invalid(format!("{what}: max_unit must be between min_unit ({}) and {MAX_AMOUNT}, got {}", self.min_unit, self.max_unit));
        }
        if self.step_size < 1 || self.step_size > MAX_AMOUNT {
            return invalid(format!("{what}: step_size must be between 1 and {MAX_AMOUNT}, got {}", self.step_size));
        }
        Ok(())
    }

    /// Whether one allocation of `amount` meets the unit constraints.
    pub fn unit_ok(&self, amount: i64) -> bool {
        amount >= self.min_unit && amount <= self.max_unit && amount % self.step_size == 0
    }
}

/// What a compute node reports; the input of `add_host`.
#[derive(Clone, Debug)]
pub struct HostSpec {
    pub name: String,
    pub uuid: String,
    pub inventories: [Inventory; N_RC],
    pub vcpus_used: i64,
    pub free_ram_mb: Option<i64>,
    pub free_disk_mb: Option<i64>,
    pub num_instances: i64,
    pub num_io_ops: i64,
    pub failed_builds: i64,
    pub enabled: bool,
    pub up: bool,
    pub hypervisor_type: String,
    pub hypervisor_version: i64,
    pub supported_instances: Vec<[String; 3]>,
    pub cpu_info: Value,
    pub stats: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub aggregates: Vec<String>,
    pub traits: Vec<String>,
    pub instances: Vec<(String, BTreeMap<String, String>)>,
    pub cell: String,
    pub free_pci_devs: i64,
    pub host_ip: String,
}

impl HostSpec {
    /// A host with the given sizes and every other field at its default.
    pub fn simple(name: &str, vcpus: i64, memory_mb: i64, disk_gb: i64) -> Self {
        let inv = |total| Inventory {
            total,
            reserved: 0,
            allocation_ratio: 1.0,
            min_unit: 1,
            max_unit: MAX_AMOUNT,
            step_size: 1,
        };
        HostSpec {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            inventories: [inv(vcpus), inv(memory_mb), inv(disk_gb)],
            vcpus_used: 0,
            free_ram_mb: None,
            free_disk_mb: None,
            num_instances: 0,
            num_io_ops: 0,
            failed_builds: 0,
            enabled: true,
            up: true,
            hypervisor_type: "QEMU".into(),
            hypervisor_version: 0,
            supported_instances: Vec::new(),
            cpu_info: Value::Object(Default::default()),
            stats: BTreeMap::new(),
            metrics: BTreeMap::new(),
            aggregates: Vec::new(),
            traits: Vec::new(),
            instances: Vec::new(),
            cell: String::new(),
            free_pci_devs: 0,
            host_ip: String::new(),
        }
    }
}

/// A field of the compute-node view that `update_host` may set.
#[derive(Clone, Debug)]
pub enum HostField {
    VcpusUsed(i64),
    FreeRamMb(i64),
    FreeDiskMb(i64),
    NumInstances(i64),
    NumIoOps(i64),
    FailedBuilds(i64),
    Enabled(bool),
    Up(bool),
    HypervisorType(String),
    HypervisorVersion(i64),
    SupportedInstances(Vec<[String; 3]>),
    CpuInfo(Value),
    Stats(BTreeMap<String, String>),
    Metrics(BTreeMap<String, f64>),
    Traits(Vec<String>),
    Cell(String),
    FreePciDevs(i64),
    HostIp(String),
}

#[derive(Clone, Debug)]
pub struct AggregateDef {
    pub uuid: String,
    pub name: String,
    pub metadata: BTreeMap<String, String>,
}

/// What the filters and weighers need from a set of aggregates, computed once per
/// distinct set (hosts share a handful of sets).
#[derive(Clone, Debug, Default)]
pub struct AggsetInfo {
    /// Aggregate indices.
    pub members: Vec<u32>,
    /// `aggregate_metadata_get_by_host`: key -> comma-split, stripped values.
    pub split: BTreeMap<String, BTreeSet<String>>,
    /// `aggregate_values_from_key`: key -> the raw values.
    pub raw: BTreeMap<String, BTreeSet<String>>,
    /// The `availability_zone` value, if an aggregate sets one (the smallest).
    pub az: Option<String>,
}

/// Placement's view of one resource class, one column per field.
#[derive(Clone, Debug, Default)]
pub struct RcColumns {
    pub total: Col<i64>,
    pub reserved: Col<i64>,
    pub allocation_ratio: Col<f64>,
    pub min_unit: Col<i64>,
    pub max_unit: Col<i64>,
    pub step_size: Col<i64>,
    pub used: Col<i64>,
    /// Derived: `int((total - reserved) * allocation_ratio)`.
    pub capacity: Col<i64>,
    /// Derived: the largest amount one allocation may take now,
    /// `min(capacity - used, max_unit)`. One column to read for the common check.
    pub fit: Col<i64>,
    /// How many hosts have `min_unit > 1` or `step_size > 1` (else those checks are moot).
    pub unit_constrained: usize,
}

impl RcColumns {
    pub fn inventory(&self, r: usize) -> Inventory {
        Inventory {
            total: self.total[r],
            reserved: self.reserved[r],
            allocation_ratio: self.allocation_ratio[r],
            min_unit: self.min_unit[r],
            max_unit: self.max_unit[r],
            step_size: self.step_size[r],
        }
    }

    /// Whether an allocation of `amount` fits on row `r` with `extra` already taken
    /// on top of the recorded usage (by earlier instances of the same request).
    #[inline]
    pub fn fits(&self, r: usize, amount: i64, extra: i64) -> bool {
        let within = if extra == 0 {
            amount <= self.fit[r]
        } else {
            self.used[r] + extra + amount <= self.capacity[r] && amount <= self.max_unit[r]
        };
        // with every min_unit and step_size at 1, an amount >= 1 always meets them
        within && (self.unit_constrained == 0 || (amount >= self.min_unit[r] && amount % self.step_size[r] == 0))
    }

    fn refresh_derived(&mut self, r: usize) {
        let inv = self.inventory(r);
        let cap = inv.capacity();
        self.capacity.set(r, cap);
        self.fit.set(r, (cap - self.used[r]).min(inv.max_unit));
    }

    fn push(&mut self, inv: &Inventory) {
        self.total.push(inv.total);
        self.reserved.push(inv.reserved);
        self.allocation_ratio.push(inv.allocation_ratio);
        self.min_unit.push(inv.min_unit);
        self.max_unit.push(inv.max_unit);
        self.step_size.push(inv.step_size);
        self.used.push(0);
        let cap = inv.capacity();
        self.capacity.push(cap);
        self.fit.push(cap.min(inv.max_unit));
        if inv.min_unit > 1 || inv.step_size > 1 {
            self.unit_constrained += 1;
        }
    }

    fn set_inventory(&mut self, r: usize, inv: &Inventory) {
        let was = self.min_unit[r] > 1 || self.step_size[r] > 1;
        let now = inv.min_unit > 1 || inv.step_size > 1;
        self.total.set(r, inv.total);
        self.reserved.set(r, inv.reserved);
        self.allocation_ratio.set(r, inv.allocation_ratio);
        self.min_unit.set(r, inv.min_unit);
        self.max_unit.set(r, inv.max_unit);
        self.step_size.set(r, inv.step_size);
        self.refresh_derived(r);
        if was != now {
            if now {
                self.unit_constrained += 1;
            } else {
                self.unit_constrained -= 1;
            }
        }
    }

    pub fn add_used(&mut self, r: usize, delta: i64) {
        let used = self.used[r] + delta;
        self.used.set(r, used);
        let fit = (self.capacity[r] - used).min(self.max_unit[r]);
        self.fit.set(r, fit);
    }

    fn remove(&mut self, r: usize) {
        if self.min_unit[r] > 1 || self.step_size[r] > 1 {
            self.unit_constrained -= 1;
        }
        self.total.remove(r);
        self.reserved.remove(r);
        self.allocation_ratio.remove(r);
        self.min_unit.remove(r);
        self.max_unit.remove(r);
        self.step_size.remove(r);
        self.used.remove(r);
        self.capacity.remove(r);
        self.fit.remove(r);
    }
}

/// Float copies of the columns the weighers read, kept in step with them by
/// `Table::refresh_weigh_cols`: weighing then streams doubles without converting.
#[derive(Clone, Debug, Default)]
pub struct WeighCols {
    pub free_ram_mb: Col<f64>,
    pub free_disk_mb: Col<f64>,
    /// `vcpus_total * cpu_allocation_ratio - vcpus_used` (CPUWeigher's raw value).
    pub cpu_free: Col<f64>,
    pub num_io_ops: Col<f64>,
    pub num_instances: Col<f64>,
    pub hypervisor_version: Col<f64>,
}

/// Rows per zone: the unit of the zone map, and of a sweep's chunks.
pub const ZONE: usize = 4096;
/// `ZoneSummary::aggset`/`traitset` when the zone's hosts do not all share one.
pub const MIXED: u32 = u32::MAX;
/// How many distinct aggregate (trait) sets a zone summary lists.
pub const MAX_SETS: usize = 16;
/// The float columns a zone keeps the min and max of, in `WeighCols` order.
pub const N_WCOLS: usize = 6;

/// What every host of a zone (ZONE consecutive rows) has in common, so that a check
/// every host of the zone passes, and the min and max of a weigher's column, are read
/// once per zone instead of once per host. Exact whenever the zone is not dirty.
#[derive(Clone, Debug)]
pub struct ZoneSummary {
    pub min_fit: [i64; N_RC],
    pub unit_constrained: [bool; N_RC],
    pub max_io_ops: i64,
    pub max_num_instances: i64,
    pub n_disabled: u32,
    pub n_down: u32,
    /// The one aggregate set (trait set) every host shares, or MIXED.
    pub aggset: u32,
    pub traitset: u32,
    /// The distinct aggregate sets (trait sets) of the zone's hosts, when there are
    /// at most MAX_SETS of them (empty otherwise).
    pub aggsets: Vec<u32>,
    pub traitsets: Vec<u32>,
    pub wmin: [f64; N_WCOLS],
    pub wmax: [f64; N_WCOLS],
}

impl ZoneSummary {
    fn empty() -> Self {
        ZoneSummary {
            min_fit: [i64::MAX; N_RC],
            unit_constrained: [false; N_RC],
            max_io_ops: i64::MIN,
            max_num_instances: i64::MIN,
            n_disabled: 0,
            n_down: 0,
            aggset: MIXED,
            traitset: MIXED,
            aggsets: Vec::new(),
            traitsets: Vec::new(),
            wmin: [f64::INFINITY; N_WCOLS],
            wmax: [f64::NEG_INFINITY; N_WCOLS],
        }
    }
}

/// The zone map: one summary per zone, and which zones changed since their summary
/// was computed (readers treat a dirty zone row by row).
#[derive(Clone, Debug, Default)]
pub struct Zones {
    pub summary: Vec<ZoneSummary>,
    pub dirty: Vec<bool>,
    any_dirty: bool,
}

impl Zones {
    #[inline]
    pub fn clean(&self, z: usize) -> Option<&ZoneSummary> {
        if self.dirty.get(z).copied().unwrap_or(true) {
            None
        } else {
            Some(&self.summary[z])
        }
    }
}

/// One consumer's allocation: (row, amount per resource class).
pub type Allocation = Vec<(u32, [i64; N_RC])>;

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub names: Vec<String>,
    pub uuids: Vec<String>,
    name_idx: HashMap<String, u32>,
    uuid_idx: HashMap<String, u32>,
    pub generation: Col<i64>,
    pub rc: [RcColumns; N_RC],
    // compute-node view
    pub vcpus_used: Col<i64>,
    pub free_ram_mb: Col<i64>,
    pub free_disk_mb: Col<i64>,
    pub num_instances: Col<i64>,
    pub num_io_ops: Col<i64>,
    pub failed_builds: Col<i64>,
    pub enabled: Col<bool>,
    pub up: Col<bool>,
    pub hypervisor_type: Col<u32>,
    pub hypervisor_version: Col<i64>,
    pub supported: Col<u32>,
    pub cpu_info: Col<u32>,
    /// Derived from cpu_info: `maxphysaddr.bits`, 0 when absent, NaN when unusable.
    pub maxphysaddr_bits: Col<f64>,
    pub stats: Col<u32>,
    pub aggset: Col<u32>,
    pub traitset: Col<u32>,
    pub cell: Col<u32>,
    pub free_pci_devs: Col<i64>,
    pub wcols: WeighCols,
    pub zones: Zones,
    pub metrics: Vec<Arc<BTreeMap<String, f64>>>,
    pub host_ip: Vec<String>,
    pub host_instances: Vec<Vec<String>>,
    pub instance_host: HashMap<String, u32>,
    pub instance_image: HashMap<String, u32>,
    // interned values
    pub strings: Interner<String>,
    pub supported_sets: Interner<Vec<[String; 3]>>,
    pub cpu_infos: Interner<String>,
    pub cpu_info_values: Vec<Value>,
    pub stats_sets: Interner<Vec<(String, String)>>,
    pub trait_names: Interner<String>,
    pub trait_sets: Interner<Vec<u32>>,
    pub image_props: Interner<Vec<(String, String)>>,
    pub aggregates: Vec<Option<AggregateDef>>,
    agg_idx: HashMap<String, u32>,
    pub agg_sets: Interner<Vec<u32>>,
    pub aggset_info: Vec<AggsetInfo>,
    // Placement ledger
    pub consumers: HashMap<String, Allocation>,
    /// Hosts with a non-zero value, so weighers whose raw value is then constant
    /// everywhere can be skipped without a pass.
    pub nonzero_failed_builds: usize,
    pub nonzero_free_pci: usize,
}

fn check_count(what: &str, v: i64) -> CoreResult<()> {
    if v < 0 {
        return invalid(format!("{what} must be >= 0, got {v}"));
    }
    Ok(())
}

fn check_name(what: &str, v: &str) -> CoreResult<()> {
    if v.is_empty() {
        return invalid(format!("{what} must not be empty"));
    }
    if v.len() > 255 {
        return invalid(format!("{what} must be at most 255 bytes, got {}", v.len()));
    }
    Ok(())
}

fn check_metrics(m: &BTreeMap<String, f64>) -> CoreResult<()> {
    for (k, v) in m {
        if !v.is_finite() {
            return invalid(format!("metric {k:?} must be finite, got {v}"));
        }
    }
    Ok(())
}

/// `cpu_info['maxphysaddr']['bits']` as ImagePropertiesFilter reads it: 0 when
/// absent or falsy (no constraint), NaN when it is not something Nova could compare
/// with an integer (the host then fails a request that names a width).
fn maxphysaddr_bits(v: &Value) -> f64 {
    let Some(m) = v.get("maxphysaddr") else { return 0.0 };
    let Some(m) = m.as_object() else { return f64::NAN };
    match m.get("bits") {
        None | Some(Value::Null) => 0.0,
        Some(Value::Bool(b)) => *b as i64 as f64,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) if s.is_empty() => 0.0,
        Some(Value::Array(a)) if a.is_empty() => 0.0,
        Some(Value::Object(o)) if o.is_empty() => 0.0,
        Some(_) => f64::NAN,
    }
}

impl Table {
    pub fn new() -> Self {
        let mut t = Table::default();
        // id 0 of each set interner is the empty set, every new host's default
        t.agg_sets.intern(Vec::new());
        t.aggset_info.push(AggsetInfo::default());
        t.trait_sets.intern(Vec::new());
        t.stats_sets.intern(Vec::new());
        t.supported_sets.intern(Vec::new());
        t.image_props.intern(Vec::new());
        t
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn row(&self, name: &str) -> CoreResult<usize> {
        self.name_idx
            .get(name)
            .map(|&r| r as usize)
            .ok_or_else(|| CoreError::UnknownHost(format!("unknown host {name:?}")))
    }

    pub fn row_opt(&self, name: &str) -> Option<usize> {
        self.name_idx.get(name).map(|&r| r as usize)
    }

    pub fn inventory(&self, r: usize, rc: usize) -> Inventory {
        self.rc[rc].inventory(r)
    }

    pub fn aggregate_index(&self, uuid: &str) -> CoreResult<u32> {
        self.agg_idx
            .get(uuid)
            .copied()
            .ok_or_else(|| CoreError::UnknownAggregate(format!("unknown aggregate {uuid:?}")))
    }

    pub fn aggregate_lookup(&self, uuid: &str) -> Option<u32> {
        self.agg_idx.get(uuid).copied()
    }

    /// The availability zone of a host, as Nova's `get_host_availability_zone`.
    pub fn availability_zone<'a>(&'a self, r: usize, default_az: &'a str) -> &'a str {
        self.aggset_info[self.aggset[r] as usize].az.as_deref().unwrap_or(default_az)
    }

    pub fn cell_name(&self, r: usize) -> &str {
        self.strings.get(self.cell[r])
    }

    // ---- interning helpers -------------------------------------------------------

    fn intern_aggset(&mut self, mut members: Vec<u32>) -> u32 {
        members.sort_unstable();
        members.dedup();
        let before = self.agg_sets.len();
        let id = self.agg_sets.intern(members);
        if self.agg_sets.len() > before {
            let info = self.compute_aggset_info(id);
            self.aggset_info.push(info);
        }
        id
    }

    fn compute_aggset_info(&self, id: u32) -> AggsetInfo {
        let members = self.agg_sets.get(id).clone();
        let mut info = AggsetInfo { members: members.clone(), ..Default::default() };
        for &a in &members {
            let Some(agg) = &self.aggregates[a as usize] else { continue };
            for (k, v) in &agg.metadata {
                let split = info.split.entry(k.clone()).or_default();
                for part in v.split(',') {
                    split.insert(super::pyfmt::py_strip(part).to_string());
                }
                info.raw.entry(k.clone()).or_default().insert(v.clone());
            }
        }
        info.az = info.raw.get("availability_zone").and_then(|s| s.iter().next().cloned());
        info
    }

    fn refresh_all_aggset_info(&mut self) {
        let infos: Vec<AggsetInfo> = (0..self.agg_sets.len() as u32).map(|id| self.compute_aggset_info(id)).collect();
        self.aggset_info = infos;
    }

    fn intern_traits(&mut self, traits: &[String]) -> CoreResult<u32> {
        for t in traits {
            check_name("trait name", t)?;
        }
        let mut ids: Vec<u32> = traits.iter().map(|t| self.trait_names.intern(t.clone())).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(self.trait_sets.intern(ids))
    }

    fn intern_cpu_info(&mut self, v: &Value) -> CoreResult<u32> {
        if !v.is_object() {
            return invalid("cpu_info must be a JSON object");
        }
        let text = super::pyfmt::json_dumps(v);
        let before = self.cpu_infos.len();
        let id = self.cpu_infos.intern(text);
        if self.cpu_infos.len() > before {
            self.cpu_info_values.push(v.clone());
        }
        Ok(id)
    }

    fn intern_stats(&mut self, stats: &BTreeMap<String, String>) -> u32 {
        self.stats_sets.intern(stats.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Nova's HVSpec fields canonicalize what the compute reports; a value they
    /// would refuse is kept as "" (it matches no image property).
    fn intern_supported(&mut self, s: &[[String; 3]]) -> u32 {
        use super::request::{canonical_arch, canonical_hv_type, canonical_vm_mode};
        let canon: Vec<[String; 3]> = s
            .iter()
            .map(|[a, h, m]| {
                [
                    canonical_arch(a).unwrap_or_default(),
                    canonical_hv_type(h).unwrap_or_default(),
                    canonical_vm_mode(m).unwrap_or_default(),
                ]
            })
            .collect();
        self.supported_sets.intern(canon)
    }

    pub fn intern_image_props(&mut self, props: &BTreeMap<String, String>) -> u32 {
        self.image_props.intern(props.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    // ---- hosts -------------------------------------------------------------------

    pub fn validate_host(&self, h: &HostSpec) -> CoreResult<()> {
        check_name("host name", &h.name)?;
        check_name("host uuid", &h.uuid)?;
        if self.name_idx.contains_key(&h.name) {
            return invalid(format!("a host named {:?} already exists", h.name));
        }
        if self.uuid_idx.contains_key(&h.uuid) {
            return invalid(format!("a host with uuid {:?} already exists", h.uuid));
        }
        for (i, inv) in h.inventories.iter().enumerate() {
            inv.validate(&format!("host {:?} {}", h.name, RC_NAMES[i]))?;
        }
        for (what, v) in [
            ("vcpus_used", h.vcpus_used),
            ("num_instances", h.num_instances),
            ("num_io_ops", h.num_io_ops),
            ("failed_builds", h.failed_builds),
            ("hypervisor_version", h.hypervisor_version),
            ("free_pci_devs", h.free_pci_devs),
        ] {
            check_count(&format!("host {:?} {what}", h.name), v)?;
        }
        check_metrics(&h.metrics)?;
        if !h.cpu_info.is_object() {
            return invalid(format!("host {:?} cpu_info must be a JSON object", h.name));
        }
        for a in &h.aggregates {
            self.aggregate_index(a)?;
        }
        for t in &h.traits {
            check_name("trait name", t)?;
        }
        let mut seen = HashSet::new();
        for (uuid, _) in &h.instances {
            check_name("instance uuid", uuid)?;
            if self.instance_host.contains_key(uuid) || !seen.insert(uuid.as_str()) {
                return invalid(format!("instance {uuid:?} is already on a host"));
            }
        }
        Ok(())
    }

    pub fn add_host(&mut self, h: &HostSpec) -> CoreResult<usize> {
        let r = self.add_host_unrefreshed(h)?;
        self.refresh_zones();
        Ok(r)
    }

    /// Adds many hosts, all or nothing (every host is validated first).
    pub fn add_hosts(&mut self, hosts: &[HostSpec]) -> CoreResult<()> {
        let mut names = HashSet::new();
        let mut uuids = HashSet::new();
        for h in hosts {
            self.validate_host(h)?;
            if !names.insert(h.name.as_str()) {
                return invalid(format!("host name {:?} appears twice", h.name));
            }
            if !uuids.insert(h.uuid.as_str()) {
                return invalid(format!("host uuid {:?} appears twice", h.uuid));
            }
        }
        for h in hosts {
            self.add_host_unrefreshed(h)?;
        }
        self.refresh_zones();
        Ok(())
    }

    fn add_host_unrefreshed(&mut self, h: &HostSpec) -> CoreResult<usize> {
        self.validate_host(h)?;
        let r = self.len();
        self.names.push(h.name.clone());
        self.uuids.push(h.uuid.clone());
        self.name_idx.insert(h.name.clone(), r as u32);
        self.uuid_idx.insert(h.uuid.clone(), r as u32);
        self.generation.push(0);
        for (i, inv) in h.inventories.iter().enumerate() {
            self.rc[i].push(inv);
        }
        let mem = &h.inventories[MEMORY_MB];
        let disk = &h.inventories[DISK_GB];
        self.vcpus_used.push(h.vcpus_used);
        self.free_ram_mb.push(h.free_ram_mb.unwrap_or(mem.total - mem.reserved));
        self.free_disk_mb.push(h.free_disk_mb.unwrap_or((disk.total - disk.reserved) * 1024));
        self.num_instances.push(h.num_instances);
        self.num_io_ops.push(h.num_io_ops);
        self.failed_builds.push(h.failed_builds);
        self.enabled.push(h.enabled);
        self.up.push(h.up);
        let hv = self.strings.intern(h.hypervisor_type.clone());
        self.hypervisor_type.push(hv);
        self.hypervisor_version.push(h.hypervisor_version);
        let sup = self.intern_supported(&h.supported_instances);
        self.supported.push(sup);
        let ci = self.intern_cpu_info(&h.cpu_info)?;
        self.cpu_info.push(ci);
        self.maxphysaddr_bits.push(maxphysaddr_bits(&h.cpu_info));
        let st = self.intern_stats(&h.stats);
        self.stats.push(st);
        let members: Vec<u32> = h.aggregates.iter().map(|a| self.agg_idx[a]).collect();
        let aggset = self.intern_aggset(members);
        self.aggset.push(aggset);
        let ts = self.intern_traits(&h.traits)?;
        self.traitset.push(ts);
        let cell = self.strings.intern(h.cell.clone());
        self.cell.push(cell);
        self.free_pci_devs.push(h.free_pci_devs);
        self.metrics.push(Arc::new(h.metrics.clone()));
        self.host_ip.push(h.host_ip.clone());
        self.host_instances.push(Vec::new());
        for (uuid, props) in &h.instances {
            let p = self.intern_image_props(props);
            self.host_instances[r].push(uuid.clone());
            self.instance_host.insert(uuid.clone(), r as u32);
            self.instance_image.insert(uuid.clone(), p);
        }
        if h.failed_builds != 0 {
            self.nonzero_failed_builds += 1;
        }
        if h.free_pci_devs != 0 {
            self.nonzero_free_pci += 1;
        }
        let w = &mut self.wcols;
        for c in [&mut w.free_ram_mb, &mut w.free_disk_mb, &mut w.cpu_free, &mut w.num_io_ops, &mut w.num_instances, &mut w.hypervisor_version] {
            c.push(0.0);
        }
        self.refresh_weigh_cols(r);
        Ok(r)
    }

    pub fn remove_host(&mut self, name: &str) -> CoreResult<()> {
        let r = self.row(name)?;
        let holders: Vec<&String> =
            self.consumers.iter().filter(|(_, a)| a.iter().any(|(row, _)| *row as usize == r)).map(|(c, _)| c).collect();
        if let Some(c) = holders.first() {
            return Err(CoreError::ClaimConflict(format!(
                "host {name:?} still holds allocations (consumer {c:?} and {} more); release them first",
                holders.len() - 1
            )));
        }
        if self.failed_builds[r] != 0 {
            self.nonzero_failed_builds -= 1;
        }
        if self.free_pci_devs[r] != 0 {
            self.nonzero_free_pci -= 1;
        }
        for uuid in std::mem::take(&mut self.host_instances[r]) {
            self.instance_host.remove(&uuid);
            self.instance_image.remove(&uuid);
        }
        self.name_idx.remove(&self.names[r]);
        self.uuid_idx.remove(&self.uuids[r]);
        self.names.remove(r);
        self.uuids.remove(r);
        self.generation.remove(r);
        for c in self.rc.iter_mut() {
            c.remove(r);
        }
        self.vcpus_used.remove(r);
        self.free_ram_mb.remove(r);
        self.free_disk_mb.remove(r);
        self.num_instances.remove(r);
        self.num_io_ops.remove(r);
        self.failed_builds.remove(r);
        self.enabled.remove(r);
        self.up.remove(r);
        self.hypervisor_type.remove(r);
        self.hypervisor_version.remove(r);
        self.supported.remove(r);
        self.cpu_info.remove(r);
        self.maxphysaddr_bits.remove(r);
        self.stats.remove(r);
        self.aggset.remove(r);
        self.traitset.remove(r);
        self.cell.remove(r);
        self.free_pci_devs.remove(r);
        let w = &mut self.wcols;
        for c in [&mut w.free_ram_mb, &mut w.free_disk_mb, &mut w.cpu_free, &mut w.num_io_ops, &mut w.num_instances, &mut w.hypervisor_version] {
            c.remove(r);
        }
        self.metrics.remove(r);
        self.host_ip.remove(r);
        self.host_instances.remove(r);
        // rows after r moved up by one
        let fix = |v: &mut u32| {
            if *v as usize > r {
                *v -= 1
            }
        };
        self.name_idx.values_mut().for_each(fix);
        self.uuid_idx.values_mut().for_each(fix);
        self.instance_host.values_mut().for_each(fix);
        for alloc in self.consumers.values_mut() {
            for (row, _) in alloc.iter_mut() {
                fix(row);
            }
        }
        // every row from r on moved up: their zones changed
        let n = self.len();
        for z in r / ZONE..self.zones.dirty.len() {
            self.touch(z * ZONE);
        }
        self.zones.summary.truncate(n.div_ceil(ZONE));
        self.zones.dirty.truncate(n.div_ceil(ZONE));
        self.refresh_zones();
        Ok(())
    }

    pub fn update_host(&mut self, name: &str, fields: &[HostField]) -> CoreResult<()> {
        let r = self.row(name)?;
        for f in fields {
            match f {
                HostField::VcpusUsed(v) => check_count("vcpus_used", *v)?,
                HostField::NumInstances(v) => check_count("num_instances", *v)?,
                HostField::NumIoOps(v) => check_count("num_io_ops", *v)?,
                HostField::FailedBuilds(v) => check_count("failed_builds", *v)?,
                HostField::HypervisorVersion(v) => check_count("hypervisor_version", *v)?,
                HostField::FreePciDevs(v) => check_count("free_pci_devs", *v)?,
                HostField::Metrics(m) => check_metrics(m)?,
                HostField::CpuInfo(v) if !v.is_object() => return invalid("cpu_info must be a JSON object"),
                HostField::Traits(ts) => {
                    for t in ts {
                        check_name("trait name", t)?;
                    }
                }
                _ => {}
            }
        }
        for f in fields {
            match f {
                HostField::VcpusUsed(v) => self.vcpus_used.set(r, *v),
                HostField::FreeRamMb(v) => self.free_ram_mb.set(r, *v),
                HostField::FreeDiskMb(v) => self.free_disk_mb.set(r, *v),
                HostField::NumInstances(v) => self.num_instances.set(r, *v),
                HostField::NumIoOps(v) => self.num_io_ops.set(r, *v),
                HostField::FailedBuilds(v) => {
                    if (self.failed_builds[r] != 0) != (*v != 0) {
                        if *v != 0 {
                            self.nonzero_failed_builds += 1
                        } else {
                            self.nonzero_failed_builds -= 1
                        }
                    }
                    self.failed_builds.set(r, *v)
                }
                HostField::Enabled(v) => self.enabled.set(r, *v),
                HostField::Up(v) => self.up.set(r, *v),
                HostField::HypervisorType(v) => {
                    let id = self.strings.intern(v.clone());
                    self.hypervisor_type.set(r, id)
                }
                HostField::HypervisorVersion(v) => self.hypervisor_version.set(r, *v),
                HostField::SupportedInstances(v) => {
                    let id = self.intern_supported(v);
                    self.supported.set(r, id)
                }
                HostField::CpuInfo(v) => {
                    let id = self.intern_cpu_info(v)?;
                    self.cpu_info.set(r, id);
                    self.maxphysaddr_bits.set(r, maxphysaddr_bits(v));
                }
                HostField::Stats(v) => {
                    let id = self.intern_stats(v);
                    self.stats.set(r, id)
                }
                HostField::Metrics(v) => self.metrics[r] = Arc::new(v.clone()),
                HostField::Traits(v) => {
                    let id = self.intern_traits(v)?;
                    self.traitset.set(r, id);
                    self.bump(r);
                }
                HostField::Cell(v) => {
                    let id = self.strings.intern(v.clone());
                    self.cell.set(r, id)
                }
                HostField::FreePciDevs(v) => {
                    if (self.free_pci_devs[r] != 0) != (*v != 0) {
                        if *v != 0 {
                            self.nonzero_free_pci += 1
                        } else {
                            self.nonzero_free_pci -= 1
                        }
                    }
                    self.free_pci_devs.set(r, *v)
                }
                HostField::HostIp(v) => self.host_ip[r] = v.clone(),
            }
        }
        self.refresh_weigh_cols(r);
        self.refresh_zones();
        Ok(())
    }

    /// Recomputes row `r` of the weighers' float columns from the authoritative ones.
    pub fn refresh_weigh_cols(&mut self, r: usize) {
        let cpu_free = self.rc[VCPU].total[r] as f64 * self.rc[VCPU].allocation_ratio[r] - self.vcpus_used[r] as f64;
        let vals = [
            self.free_ram_mb[r] as f64,
            self.free_disk_mb[r] as f64,
            cpu_free,
            self.num_io_ops[r] as f64,
            self.num_instances[r] as f64,
            self.hypervisor_version[r] as f64,
        ];
        let w = &mut self.wcols;
        for (c, v) in [&mut w.free_ram_mb, &mut w.free_disk_mb, &mut w.cpu_free, &mut w.num_io_ops, &mut w.num_instances, &mut w.hypervisor_version]
            .into_iter()
            .zip(vals)
        {
            c.set(r, v);
        }
        self.touch(r);
    }

    fn bump(&mut self, r: usize) {
        let g = self.generation[r] + 1;
        self.generation.set(r, g);
        self.touch(r);
    }

    /// Row `r` changed: its zone's summary must be recomputed.
    pub fn touch(&mut self, r: usize) {
        let z = r / ZONE;
        let zones = &mut self.zones;
        while zones.dirty.len() <= z {
            zones.dirty.push(true);
            zones.summary.push(ZoneSummary::empty());
        }
        zones.dirty[z] = true;
        zones.any_dirty = true;
    }

    /// Recomputes the summaries of the zones that changed. Every public mutator ends
    /// with it; a reader never needs it for correctness (dirty zones are read row by
    /// row), only for speed.
    pub fn refresh_zones(&mut self) {
        if !self.zones.any_dirty {
            return;
        }
        let n = self.len();
        let nz = n.div_ceil(ZONE);
        self.zones.summary.resize(nz, ZoneSummary::empty());
        self.zones.dirty.resize(nz, true);
        for z in 0..nz {
            if self.zones.dirty[z] {
                let summary = self.summarise(z * ZONE..((z + 1) * ZONE).min(n));
                self.zones.summary[z] = summary;
                self.zones.dirty[z] = false;
            }
        }
        self.zones.any_dirty = false;
    }

    fn summarise(&self, rows: std::ops::Range<usize>) -> ZoneSummary {
        let mut z = ZoneSummary::empty();
        let (a, b) = (rows.start, rows.end);
        for rc in 0..N_RC {
            let c = &self.rc[rc];
            z.min_fit[rc] = c.fit[a..b].iter().copied().min().unwrap_or(i64::MAX);
            z.unit_constrained[rc] =
                c.unit_constrained > 0 && (a..b).any(|r| c.min_unit[r] > 1 || c.step_size[r] > 1);
        }
        z.max_io_ops = self.num_io_ops[a..b].iter().copied().max().unwrap_or(i64::MIN);
        z.max_num_instances = self.num_instances[a..b].iter().copied().max().unwrap_or(i64::MIN);
        z.n_disabled = self.enabled[a..b].iter().filter(|e| !**e).count() as u32;
        z.n_down = self.up[a..b].iter().filter(|e| !**e).count() as u32;
        let uniform = |v: &[u32]| match v.first() {
            Some(&f) if v.iter().all(|&x| x == f) => f,
            _ => MIXED,
        };
        z.aggset = uniform(&self.aggset[a..b]);
        z.traitset = uniform(&self.traitset[a..b]);
        let distinct = |v: &[u32]| {
            let mut out: Vec<u32> = Vec::new();
            for &x in v {
                if !out.contains(&x) {
                    if out.len() == MAX_SETS {
                        return Vec::new();
                    }
                    out.push(x);
                }
            }
            out
        };
        z.aggsets = distinct(&self.aggset[a..b]);
        z.traitsets = distinct(&self.traitset[a..b]);
        let w = &self.wcols;
        for (i, col) in [&w.free_ram_mb, &w.free_disk_mb, &w.cpu_free, &w.num_io_ops, &w.num_instances, &w.hypervisor_version]
            .into_iter()
            .enumerate()
        {
            for &x in &col[a..b] {
                z.wmin[i] = z.wmin[i].min(x);
                z.wmax[i] = z.wmax[i].max(x);
            }
        }
        z
    }

    // ---- aggregates --------------------------------------------------------------

    pub fn set_aggregate(&mut self, agg: AggregateDef) -> CoreResult<()> {
        check_name("aggregate uuid", &agg.uuid)?;
        for k in agg.metadata.keys() {
            check_name("aggregate metadata key", k)?;
        }
        match self.agg_idx.get(&agg.uuid) {
            Some(&i) => self.aggregates[i as usize] = Some(agg),
            None => {
                let i = self.aggregates.len() as u32;
                self.agg_idx.insert(agg.uuid.clone(), i);
                self.aggregates.push(Some(agg));
            }
        }
        self.refresh_all_aggset_info();
        Ok(())
    }

    pub fn remove_aggregate(&mut self, uuid: &str) -> CoreResult<()> {
        let i = self.aggregate_index(uuid)?;
        let rows: Vec<usize> = (0..self.len()).filter(|&r| self.agg_sets.get(self.aggset[r]).contains(&i)).collect();
        for r in rows {
            let members: Vec<u32> = self.agg_sets.get(self.aggset[r]).iter().copied().filter(|&a| a != i).collect();
            let id = self.intern_aggset(members);
            self.aggset.set(r, id);
            self.bump(r);
        }
        self.aggregates[i as usize] = None;
        self.agg_idx.remove(uuid);
        self.refresh_all_aggset_info();
        self.refresh_zones();
        Ok(())
    }

    pub fn set_host_aggregate(&mut self, uuid: &str, name: &str, member: bool) -> CoreResult<()> {
        let i = self.aggregate_index(uuid)?;
        let r = self.row(name)?;
        let mut members = self.agg_sets.get(self.aggset[r]).clone();
        let present = members.contains(&i);
        if present == member {
            return Ok(());
        }
        if member {
            members.push(i);
        } else {
            members.retain(|&a| a != i);
        }
        let id = self.intern_aggset(members);
        self.aggset.set(r, id);
        self.bump(r);
        self.refresh_zones();
        Ok(())
    }

    pub fn host_aggregates(&self, r: usize) -> Vec<String> {
        self.agg_sets
            .get(self.aggset[r])
            .iter()
            .filter_map(|&a| self.aggregates[a as usize].as_ref().map(|g| g.uuid.clone()))
            .collect()
    }

    // ---- instances ---------------------------------------------------------------

    pub fn add_instance(&mut self, name: &str, uuid: &str, props: &BTreeMap<String, String>) -> CoreResult<()> {
        let r = self.row(name)?;
        check_name("instance uuid", uuid)?;
        if let Some(&other) = self.instance_host.get(uuid) {
            return invalid(format!("instance {uuid:?} is already on host {:?}", self.names[other as usize]));
        }
        let p = self.intern_image_props(props);
        self.host_instances[r].push(uuid.to_string());
        self.instance_host.insert(uuid.to_string(), r as u32);
        self.instance_image.insert(uuid.to_string(), p);
        Ok(())
    }

    pub fn remove_instance(&mut self, uuid: &str) -> CoreResult<()> {
        let Some(r) = self.instance_host.remove(uuid) else {
            return invalid(format!("instance {uuid:?} is on no host"));
        };
        self.instance_image.remove(uuid);
        self.host_instances[r as usize].retain(|u| u != uuid);
        Ok(())
    }

    // ---- Placement ---------------------------------------------------------------

    fn check_generations(&self, generations: Option<&[(String, i64)]>) -> CoreResult<()> {
        if let Some(gens) = generations {
            for (name, g) in gens {
                let r = self.row(name)?;
                if self.generation[r] != *g {
                    return Err(CoreError::GenerationConflict(format!(
                        "host {name:?} is at generation {}, not {g}: it changed since it was read",
                        self.generation[r]
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn set_inventory(&mut self, name: &str, rc: usize, inv: &Inventory, generation: Option<i64>) -> CoreResult<i64> {
        let r = self.row(name)?;
        inv.validate(&format!("host {name:?} {}", RC_NAMES[rc]))?;
        self.check_generations(generation.map(|g| vec![(name.to_string(), g)]).as_deref())?;
        self.rc[rc].set_inventory(r, inv);
        self.refresh_weigh_cols(r);
        self.bump(r);
        self.refresh_zones();
        Ok(self.generation[r])
    }

    /// Turns `{host: {rc: amount}}` into rows, checking names and amounts.
    pub fn resolve_allocation(&self, alloc: &[(String, Vec<(String, i64)>)]) -> CoreResult<Allocation> {
        let mut out: Allocation = Vec::new();
        for (name, amounts) in alloc {
            let r = self.row(name)? as u32;
            if amounts.is_empty() {
                return invalid(format!("allocation on {name:?} must name at least one resource class"));
            }
            let mut a = [0i64; N_RC];
            for (rc_name, amount) in amounts {
                let rc = rc_index(rc_name)?;
                if *amount < 1 || *amount > MAX_AMOUNT {
                    return invalid(format!("allocation of {rc_name} on {name:?} must be between 1 and {MAX_AMOUNT}, got {amount}"));
                }
                a[rc] += amount;
            }
            match out.iter_mut().find(|(row, _)| *row == r) {
                Some((_, prev)) => (0..N_RC).for_each(|i| prev[i] += a[i]),
                None => out.push((r, a)),
            }
        }
        Ok(out)
    }

    /// Placement's `_set_allocations`: replace what `consumer` holds by `new`.
    fn write_allocation(&mut self, consumer: &str, new: Allocation, generations: Option<&[(String, i64)]>) -> CoreResult<Vec<(String, i64)>> {
        self.check_generations(generations)?;
        let old = self.consumers.get(consumer).cloned().unwrap_or_default();
        // per (row, rc): usage before and after
        let mut touched: Vec<u32> = old.iter().chain(new.iter()).map(|(r, _)| *r).collect();
        touched.sort_unstable();
        touched.dedup();
        let amount_in = |alloc: &Allocation, r: u32, rc: usize| -> i64 {
            alloc.iter().filter(|(row, _)| *row == r).map(|(_, a)| a[rc]).sum()
        };
        for &r in &touched {
            let ri = r as usize;
            for rc in 0..N_RC {
                let before = self.rc[rc].used[ri];
                let new_amount = amount_in(&new, r, rc);
                let after = before - amount_in(&old, r, rc) + new_amount;
                let inv = self.rc[rc].inventory(ri);
                if new_amount > 0 && !inv.unit_ok(new_amount) {
                    return Err(CoreError::CapacityExceeded(format!(
                        "{} {} on host {:?} breaks min_unit={}, max_unit={}, step_size={}",
                        new_amount, RC_NAMES[rc], self.names[ri], inv.min_unit, inv.max_unit, inv.step_size
                    )));
                }
                let cap = self.rc[rc].capacity[ri];
                if after > cap && after > before {
                    return Err(CoreError::CapacityExceeded(format!(
                        "host {:?} has {} of {} {} in use; {} more do not fit",
                        self.names[ri],
                        before,
                        cap,
                        RC_NAMES[rc],
                        after - before
                    )));
                }
            }
        }
        for &r in &touched {
            for rc in 0..N_RC {
                let delta = amount_in(&new, r, rc) - amount_in(&old, r, rc);
                if delta != 0 {
                    self.rc[rc].add_used(r as usize, delta);
                }
            }
            self.bump(r as usize);
        }
        if new.is_empty() {
            self.consumers.remove(consumer);
        } else {
            self.consumers.insert(consumer.to_string(), new);
        }
        self.refresh_zones();
        Ok(touched.iter().map(|&r| (self.names[r as usize].clone(), self.generation[r as usize])).collect())
    }

    pub fn claim(&mut self, consumer: &str, alloc: &[(String, Vec<(String, i64)>)], generations: Option<&[(String, i64)]>) -> CoreResult<Vec<(String, i64)>> {
        check_name("consumer", consumer)?;
        let new = self.resolve_allocation(alloc)?;
        if new.is_empty() {
            return invalid("a claim must allocate something");
        }
        if self.consumers.contains_key(consumer) {
            return Err(CoreError::ClaimConflict(format!(
                "consumer {consumer:?} already holds allocations; replace them instead"
            )));
        }
        self.write_allocation(consumer, new, generations)
    }

    pub fn replace(&mut self, consumer: &str, alloc: &[(String, Vec<(String, i64)>)], generations: Option<&[(String, i64)]>) -> CoreResult<Vec<(String, i64)>> {
        check_name("consumer", consumer)?;
        let new = self.resolve_allocation(alloc)?;
        if new.is_empty() && !self.consumers.contains_key(consumer) {
            return Err(CoreError::UnknownConsumer(format!("consumer {consumer:?} holds no allocations")));
        }
        self.write_allocation(consumer, new, generations)
    }

    pub fn release(&mut self, consumer: &str) -> CoreResult<Vec<(String, i64)>> {
        if !self.consumers.contains_key(consumer) {
            return Err(CoreError::UnknownConsumer(format!("consumer {consumer:?} holds no allocations")));
        }
        self.write_allocation(consumer, Vec::new(), None)
    }

    /// Records an allocation select_destinations already checked (same rules).
    pub fn commit_allocation(&mut self, consumer: &str, r: usize, amounts: [i64; N_RC]) {
        for (rc, &a) in amounts.iter().enumerate() {
            if a != 0 {
                self.rc[rc].add_used(r, a);
            }
        }
        self.bump(r);
        self.consumers.insert(consumer.to_string(), vec![(r as u32, amounts)]);
    }

    pub fn usage(&self, r: usize) -> [i64; N_RC] {
        [self.rc[0].used[r], self.rc[1].used[r], self.rc[2].used[r]]
    }

    pub fn capacity(&self, r: usize) -> [i64; N_RC] {
        [self.rc[0].capacity[r], self.rc[1].capacity[r], self.rc[2].capacity[r]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> Table {
        let mut t = Table::new();
        for i in 0..n {
            t.add_host(&HostSpec::simple(&format!("h{i}"), 8, 16384, 100)).unwrap();
        }
        t
    }

    fn alloc(host: &str, vcpu: i64, mem: i64) -> Vec<(String, Vec<(String, i64)>)> {
        vec![(host.into(), vec![("VCPU".into(), vcpu), ("MEMORY_MB".into(), mem)])]
    }

    #[test]
    fn capacity_uses_placement_formula() {
        let mut t = table(1);
        let inv = Inventory { total: 10, reserved: 3, allocation_ratio: 1.5, min_unit: 1, max_unit: 100, step_size: 1 };
        t.set_inventory("h0", VCPU, &inv, None).unwrap();
        assert_eq!(t.capacity(0)[VCPU], 10); // int(7 * 1.5)
        t.claim("a", &alloc("h0", 10, 1), None).unwrap();
        let err = t.claim("b", &alloc("h0", 1, 1), None).unwrap_err();
        assert!(matches!(err, CoreError::CapacityExceeded(_)));
        assert_eq!(t.usage(0), [10, 1, 0]);
    }

    #[test]
    fn release_restores_usage_and_bumps_generation() {
        let mut t = table(2);
        let g0 = t.generation[0];
        t.claim("a", &alloc("h0", 2, 512), None).unwrap();
        assert_eq!(t.usage(0), [2, 512, 0]);
        t.release("a").unwrap();
        assert_eq!(t.usage(0), [0, 0, 0]);
        assert_eq!(t.generation[0], g0 + 2);
        assert!(matches!(t.release("a"), Err(CoreError::UnknownConsumer(_))));
    }

    #[test]
    fn stale_generation_is_refused_and_changes_nothing() {
        let mut t = table(1);
        t.claim("a", &alloc("h0", 1, 1), None).unwrap();
        let err = t.claim("b", &alloc("h0", 1, 1), Some(&[("h0".into(), 0)])).unwrap_err();
        assert!(matches!(err, CoreError::GenerationConflict(_)));
        assert_eq!(t.usage(0), [1, 1, 0]);
        assert!(!t.consumers.contains_key("b"));
    }

    #[test]
    fn shrinking_an_over_capacity_usage_is_allowed() {
        let mut t = table(1);
        t.claim("a", &alloc("h0", 8, 1), None).unwrap();
        let inv = Inventory { total: 4, ..t.inventory(0, VCPU) };
        t.set_inventory("h0", VCPU, &inv, None).unwrap();
        // still over capacity, but smaller: allowed
        t.replace("a", &alloc("h0", 6, 1), None).unwrap();
        assert_eq!(t.usage(0)[VCPU], 6);
        // growing is not
        assert!(t.replace("a", &alloc("h0", 7, 1), None).is_err());
        assert!(t.claim("b", &alloc("h0", 1, 1), None).is_err());
    }

    #[test]
    fn unit_constraints_are_enforced() {
        let mut t = table(1);
        let inv = Inventory { min_unit: 2, max_unit: 4, step_size: 2, ..t.inventory(0, VCPU) };
        t.set_inventory("h0", VCPU, &inv, None).unwrap();
        assert!(t.claim("a", &alloc("h0", 3, 1), None).is_err());
        assert!(t.claim("a", &alloc("h0", 6, 1), None).is_err());
        assert!(t.claim("a", &alloc("h0", 1, 1), None).is_err());
        t.claim("a", &alloc("h0", 4, 1), None).unwrap();
    }

    #[test]
    fn removing_a_host_keeps_order_and_indexes() {
        let mut t = table(4);
        t.claim("a", &alloc("h3", 1, 1), None).unwrap();
        assert!(matches!(t.remove_host("h3"), Err(CoreError::ClaimConflict(_))));
        t.remove_host("h1").unwrap();
        assert_eq!(t.names, vec!["h0", "h2", "h3"]);
        assert_eq!(t.row("h3").unwrap(), 2);
        assert_eq!(t.consumers["a"][0].0, 2);
        t.release("a").unwrap();
        assert_eq!(t.usage(2), [0, 0, 0]);
    }

    #[test]
    fn bad_inventory_is_refused() {
        let mut t = table(1);
        let good = t.inventory(0, VCPU);
        for bad in [
            Inventory { total: -1, ..good },
            Inventory { reserved: 9, ..good },
            Inventory { allocation_ratio: f64::NAN, ..good },
            Inventory { allocation_ratio: 0.0, ..good },
            Inventory { min_unit: 0, ..good },
            Inventory { step_size: 0, ..good },
        ] {
            assert!(t.set_inventory("h0", VCPU, &bad, None).is_err());
        }
        assert_eq!(t.inventory(0, VCPU), good);
        assert_eq!(t.generation[0], 0);
    }
}
