//! The checks of one request against one table: the Placement stage, the host
//! narrowing of `get_filtered_hosts`, and Nova's filters, each compiled into the
//! data a per-host test needs (per-aggregate-set and per-trait-set answers are worked
//! out once here, so the per-host pass reads integers).
//!
//! A pass runs its checks in order over the hosts and counts each rejected host
//! against the first check it fails: the same counts Nova's sequential filters give.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde_json::Value;

use super::config::{Config, FilterKind};
use super::error::{CoreError, CoreResult};
use super::extra_specs::matches;
use super::pyfmt::{float_str, json_str, py_int, py_strip};
use super::request::{version_from_int, version_satisfies, Policy, Request};
use super::table::{Table, ZoneSummary, N_RC, RC_NAMES, ZONE};

/// Hosts per work item when a pass is split across threads.
pub const PAR_CHUNK: usize = 16 * 1024;
/// Below this many hosts a pass runs on the calling thread.
pub const PAR_MIN: usize = 64 * 1024;

/// Where a ComputeCapabilitiesFilter spec reads its value from.
#[derive(Clone, Debug)]
pub enum CapSource {
    Attr(Attr),
    /// `stats[key]`, per stats set: Some(pass), or None when the host has no such
    /// key, which passes for an unscoped spec (Nova skips it) and fails a
    /// `capabilities:` one.
    Stats { ok: Vec<Option<bool>>, missing_passes: bool },
    /// `cpu_info` walked by the remaining scope; per cpu_info id.
    CpuInfo(Vec<bool>),
    /// A HostState attribute that is an object here: fails every host.
    FailAll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    Host,
    Uuid,
    HypervisorType,
    HypervisorVersion,
    FreeRamMb,
    FreeDiskMb,
    TotalUsableRamMb,
    TotalUsableDiskGb,
    DiskMbUsed,
    VcpusTotal,
    VcpusUsed,
    NumInstances,
    NumIoOps,
    FailedBuilds,
    CpuAllocationRatio,
    RamAllocationRatio,
    DiskAllocationRatio,
    CellUuid,
    HostIp,
}

fn attr_by_name(name: &str) -> Option<Attr> {
    Some(match name {
        "host" | "nodename" | "hypervisor_hostname" => Attr::Host,
        "uuid" => Attr::Uuid,
        "hypervisor_type" => Attr::HypervisorType,
        "hypervisor_version" => Attr::HypervisorVersion,
        "free_ram_mb" => Attr::FreeRamMb,
        "free_disk_mb" => Attr::FreeDiskMb,
        "total_usable_ram_mb" => Attr::TotalUsableRamMb,
        "total_usable_disk_gb" => Attr::TotalUsableDiskGb,
        "disk_mb_used" => Attr::DiskMbUsed,
        "vcpus_total" => Attr::VcpusTotal,
        "vcpus_used" => Attr::VcpusUsed,
        "num_instances" => Attr::NumInstances,
        "num_io_ops" => Attr::NumIoOps,
        "failed_builds" => Attr::FailedBuilds,
        "cpu_allocation_ratio" => Attr::CpuAllocationRatio,
        "ram_allocation_ratio" => Attr::RamAllocationRatio,
        "disk_allocation_ratio" => Attr::DiskAllocationRatio,
        "cell_uuid" => Attr::CellUuid,
        "host_ip" => Attr::HostIp,
        _ => return None,
    })
}

/// HostState attributes Nova has that are objects (or methods) rather than values.
const OBJECT_ATTRS: &[&str] = &[
    "pci_stats", "numa_topology", "supported_instances", "limits", "metrics", "aggregates", "instances",
    "updated", "allocation_candidates", "service", "stats", "_lock_name", "update", "consume_from_request",
    "_update_from_compute_node", "_locked_consume_from_request",
];

#[derive(Clone, Debug)]
pub struct CapSpec {
    pub source: CapSource,
    pub req: String,
}

/// The per-host values that change while one request places its instances.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dyn {
    pub num_io_ops: i64,
    pub num_instances: i64,
    /// Members of the request's server group on the host.
    pub members: i64,
    /// The instance being placed is already on the host.
    pub uuid_here: bool,
    /// The host is in the server group's `hosts`.
    pub in_group_hosts: bool,
    /// The server group's `hosts` is not empty.
    pub group_hosts_nonempty: bool,
}

#[derive(Clone, Debug)]
pub enum Test {
    Disabled,
    Resource { rc: usize, amount: i64 },
    TraitSets(Vec<bool>),
    AggSets(Vec<bool>),
    /// Rows marked true pass (dense, one entry per table row).
    Rows(Vec<bool>),
    AllPass,
    AllFail,
    Up,
    Capabilities(Vec<CapSpec>),
    Image { triple_ok: Vec<bool>, check_version: bool, check_bits: bool },
    AntiAffinity { max: i64 },
    Affinity,
    IoOps(Limit),
    NumInstances(Limit),
    Metrics(Vec<String>),
}

#[derive(Clone, Debug)]
pub enum Limit {
    Uniform(i64),
    ByAggset(Vec<i64>),
}

impl Limit {
    #[inline]
    fn get(&self, aggset: u32) -> i64 {
        match self {
            Limit::Uniform(v) => *v,
            Limit::ByAggset(v) => v[aggset as usize],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub test: Test,
    /// The filter this check is, if it is one (None for Placement and narrowing).
    pub filter: Option<FilterKind>,
    /// Reads per-request state (`Dyn`), so it must be re-run after a consumption.
    pub per_instance: bool,
}

pub struct Plan<'a> {
    pub t: &'a Table,
    pub cfg: &'a Config,
    pub req: &'a Request,
    /// Placement stage (runs once, at index 0).
    pub placement: Vec<Check>,
    /// Narrowing and filters of a pass; `Once` filters are skipped at index > 0.
    pub pass: Vec<Check>,
    /// Request members on each row before the request (anti-affinity, soft weighers).
    pub base_members: HashMap<u32, i64>,
    /// Rows in the group's `hosts` at the start of the request.
    pub group_host_rows: HashSet<u32>,
    /// Some instance of the request is already on a host (a move): the
    /// anti-affinity exemption then differs per instance.
    pub uuids_preexisting: bool,
}

/// A per-set or per-row test whose answer is the same everywhere is a constant.
fn simplify(test: Test) -> Test {
    let uniform = |v: &[bool]| -> Option<bool> {
        let first = *v.first()?;
        v.iter().all(|&x| x == first).then_some(first)
    };
    let constant = match &test {
        Test::AggSets(v) | Test::TraitSets(v) | Test::Rows(v) => uniform(v),
        _ => None,
    };
    match constant {
        Some(true) => Test::AllPass,
        Some(false) => Test::AllFail,
        None => test,
    }
}

fn aggset_ok(t: &Table, f: impl Fn(&super::table::AggsetInfo) -> bool) -> Vec<bool> {
    t.aggset_info.iter().map(f).collect()
}

fn rows_mask(t: &Table, rows: impl IntoIterator<Item = usize>) -> Vec<bool> {
    let mut m = vec![false; t.len()];
    for r in rows {
        m[r] = true;
    }
    m
}

/// `validate_num_values(aggregate_values_from_key(host, key), default, int)`.
fn int_limit(t: &Table, key: &str, default: i64) -> Limit {
    if !t.aggset_info.iter().any(|i| i.raw.contains_key(key)) {
        return Limit::Uniform(default);
    }
    Limit::ByAggset(
        t.aggset_info
            .iter()
            .map(|i| match i.raw.get(key) {
                None => default,
                Some(vals) => {
                    let parsed: Option<Vec<i64>> = vals.iter().map(|v| py_int(v)).collect();
                    parsed.and_then(|p| p.into_iter().min()).unwrap_or(default)
                }
            })
            .collect(),
    )
}

impl<'a> Plan<'a> {
    pub fn new(t: &'a Table, cfg: &'a Config, req: &'a Request) -> CoreResult<Self> {
        let mut plan = Self::build(t, cfg, req)?;
        for c in plan.placement.iter_mut().chain(plan.pass.iter_mut()) {
            c.test = simplify(std::mem::replace(&mut c.test, Test::AllPass));
        }
        Ok(plan)
    }

    fn build(t: &'a Table, cfg: &'a Config, req: &'a Request) -> CoreResult<Self> {
        let input = &req.input;
        let mut placement = Vec::new();
        let mk = |name: &str, test: Test| Check { name: name.into(), test, filter: None, per_instance: false };

        // ---- Placement stage -------------------------------------------------------
        placement.push(mk("COMPUTE_STATUS_DISABLED", Test::Disabled));
        for rc in 0..N_RC {
            if req.amounts[rc] > 0 {
                placement.push(mk(RC_NAMES[rc], Test::Resource { rc, amount: req.amounts[rc] }));
            }
        }
        if !req.required_traits.is_empty() {
            let ids: Vec<Option<u32>> = req.required_traits.iter().map(|n| t.trait_names.lookup(n)).collect();
            let ok = t
                .trait_sets
                .iter()
                .map(|(_, set)| ids.iter().all(|id| id.is_some_and(|id| set.binary_search(&id).is_ok())))
                .collect();
            placement.push(mk("required_traits", Test::TraitSets(ok)));
        }
        if !req.forbidden_traits.is_empty() {
            let ids: Vec<u32> = req.forbidden_traits.iter().filter_map(|n| t.trait_names.lookup(n)).collect();
            let ok = t.trait_sets.iter().map(|(_, set)| !ids.iter().any(|id| set.binary_search(id).is_ok())).collect();
            placement.push(mk("forbidden_traits", Test::TraitSets(ok)));
        }
        if !input.member_of.is_empty() {
            let groups: Vec<Vec<u32>> =
                input.member_of.iter().map(|g| g.iter().filter_map(|u| t.aggregate_lookup(u)).collect()).collect();
            let ok = aggset_ok(t, |info| groups.iter().all(|g| g.iter().any(|a| info.members.binary_search(a).is_ok())));
            placement.push(mk("member_of", Test::AggSets(ok)));
        }
        if !input.forbidden_aggregates.is_empty() {
            let aggs: Vec<u32> = input.forbidden_aggregates.iter().filter_map(|u| t.aggregate_lookup(u)).collect();
            let ok = aggset_ok(t, |info| !aggs.iter().any(|a| info.members.binary_search(a).is_ok()));
            placement.push(mk("forbidden_aggregates", Test::AggSets(ok)));
        }
        if let Some(az) = &input.availability_zone {
            // map_az_to_placement_aggregate: the aggregates that name this zone
            let zone_aggs: Vec<u32> = t
                .aggregates
                .iter()
                .enumerate()
                .filter(|(_, a)| a.as_ref().is_some_and(|a| a.metadata.get("availability_zone") == Some(az)))
                .map(|(i, _)| i as u32)
                .collect();
            let test = if zone_aggs.is_empty() {
                Test::AllPass
            } else {
                Test::AggSets(aggset_ok(t, |info| zone_aggs.iter().any(|a| info.members.binary_search(a).is_ok())))
            };
            placement.push(mk("availability_zone", test));
        }

        // ---- narrowing (get_filtered_hosts) ----------------------------------------
        let mut pass = Vec::new();
        if let Some(host) = &input.requested_host {
            let node_ok = input.requested_node.as_ref().is_none_or(|n| n == host);
            let rows = t.row_opt(host).filter(|_| node_ok);
            pass.push(mk("requested_destination", Test::Rows(rows_mask(t, rows))));
        }
        if !input.ignore_hosts.is_empty() {
            let lowered: HashSet<String> = input.ignore_hosts.iter().map(|h| h.to_lowercase()).collect();
            let keep = t.names.iter().map(|n| !lowered.contains(&n.to_lowercase())).collect();
            pass.push(mk("ignore_hosts", Test::Rows(keep)));
        }
        if !input.force_hosts.is_empty() {
            let lowered: HashSet<String> = input.force_hosts.iter().map(|h| h.to_lowercase()).collect();
            let keep = t.names.iter().map(|n| lowered.contains(&n.to_lowercase())).collect();
            pass.push(mk("force_hosts", Test::Rows(keep)));
        }
        if !input.force_nodes.is_empty() {
            let nodes: HashSet<&String> = input.force_nodes.iter().collect();
            let keep = t.names.iter().map(|n| nodes.contains(n)).collect();
            pass.push(mk("force_nodes", Test::Rows(keep)));
        }
        let forced = !(input.force_hosts.is_empty() && input.force_nodes.is_empty()) && !input.is_rebuild;

        // ---- filters ---------------------------------------------------------------
        if !forced {
            for &kind in &cfg.filters {
                let test = if input.is_rebuild && !kind.run_on_rebuild() {
                    Test::AllPass
                } else {
                    Self::filter_test(t, cfg, req, kind)?
                };
                let per_instance = !kind.once_per_request()
                    && matches!(test, Test::AntiAffinity { .. } | Test::Affinity | Test::IoOps(_) | Test::NumInstances(_));
                pass.push(Check { name: kind.name().into(), test, filter: Some(kind), per_instance });
            }
        }

        let mut base_members = HashMap::new();
        let mut group_host_rows = HashSet::new();
        if let Some(g) = &req.group {
            for m in &g.members {
                if let Some(&r) = t.instance_host.get(m) {
                    *base_members.entry(r).or_insert(0) += 1;
                }
            }
            for h in &g.hosts {
                if let Some(r) = t.row_opt(h) {
                    group_host_rows.insert(r as u32);
                }
            }
        }
        let uuids_preexisting = input.instance_uuids.iter().any(|u| t.instance_host.contains_key(u));
        Ok(Plan { t, cfg, req, placement, pass, base_members, group_host_rows, uuids_preexisting })
    }

    fn filter_test(t: &Table, cfg: &Config, req: &Request, kind: FilterKind) -> CoreResult<Test> {
        let input = &req.input;
        Ok(match kind {
            FilterKind::AllHosts => Test::AllPass,
            FilterKind::Compute => Test::Up,
            FilterKind::ComputeCapabilities => {
                let specs = capability_specs(t, req);
                if specs.is_empty() {
                    Test::AllPass
                } else {
                    Test::Capabilities(specs)
                }
            }
            FilterKind::ImageProperties => {
                let arch = req.img_arch.clone().or_else(|| {
                    cfg.image_properties_default_architecture.as_deref().map(|a| super::request::canonical_arch(a).unwrap_or_default())
                });
                let wanted: Vec<&str> =
                    [arch.as_deref(), req.img_hv_type.as_deref(), req.img_vm_mode.as_deref()].into_iter().flatten().collect();
                if wanted.is_empty() {
                    Test::AllPass
                } else {
                    // Nova tests membership in the whole triple, not position by position.
                    let triple_ok = t
                        .supported_sets
                        .iter()
                        .map(|(_, triples)| {
                            // an empty list fails; otherwise some triple must hold every wanted value
                            triples.iter().any(|tr| wanted.iter().all(|w| tr.iter().any(|x| x == w)))
                        })
                        .collect();
                    Test::Image {
                        triple_ok,
                        check_version: req.img_hv_requested_version.is_some(),
                        check_bits: req.img_maxphysaddr_bits.is_some_and(|b| b != 0),
                    }
                }
            }
            FilterKind::GroupAntiAffinity => match &req.group {
                Some(g) if g.policy == Policy::AntiAffinity => Test::AntiAffinity { max: g.max_server_per_host.unwrap_or(1) },
                _ => Test::AllPass,
            },
            FilterKind::GroupAffinity => match &req.group {
                Some(g) if g.policy == Policy::Affinity => Test::Affinity,
                _ => Test::AllPass,
            },
            FilterKind::SameHost | FilterKind::DifferentHost => {
                let uuids = if kind == FilterKind::SameHost { &input.same_host } else { &input.different_host };
                if uuids.is_empty() {
                    Test::AllPass
                } else {
                    let holders: HashSet<usize> = uuids.iter().filter_map(|u| t.instance_host.get(u)).map(|&r| r as usize).collect();
                    let same = kind == FilterKind::SameHost;
                    Test::Rows((0..t.len()).map(|r| holders.contains(&r) == same).collect())
                }
            }
            FilterKind::AggregateInstanceExtraSpecs => {
                let specs: Vec<(String, &String)> = input
                    .extra_specs
                    .iter()
                    .filter_map(|(k, v)| match k.split_once(':') {
                        None => Some((k.clone(), v)),
                        Some(("aggregate_instance_extra_specs", rest)) => Some((rest.to_string(), v)),
                        Some(_) => None,
                    })
                    .collect();
                if specs.is_empty() {
                    Test::AllPass
                } else {
                    Test::AggSets(aggset_ok(t, |info| {
                        specs.iter().all(|(key, req)| match info.split.get(key) {
                            Some(vals) if !vals.is_empty() => vals.iter().any(|v| matches(Some(v), req)),
                            _ => false,
                        })
                    }))
                }
            }
            FilterKind::AggregateMultiTenancyIsolation => {
                let project = &input.project_id;
                Test::AggSets(aggset_ok(t, |info| {
                    let tenants: Vec<&String> =
                        info.split.iter().filter(|(k, _)| k.starts_with("filter_tenant_id")).flat_map(|(_, v)| v.iter()).collect();
                    tenants.is_empty() || tenants.contains(&project)
                }))
            }
            FilterKind::AggregateTypeAffinity => {
                let flavor = &input.flavor_name;
                Test::AggSets(aggset_ok(t, |info| match info.raw.get("instance_type") {
                    None => true,
                    Some(vals) => vals.iter().any(|v| v.split(',').any(|x| py_strip(x) == flavor)),
                }))
            }
            FilterKind::AggregateImagePropertiesIsolation => {
                let props = &input.image_properties;
                let ns = cfg.aggregate_image_properties_isolation_namespace.as_ref().map(|n| {
                    format!("{n}{}", cfg.aggregate_image_properties_isolation_separator)
                });
                Test::AggSets(aggset_ok(t, |info| {
                    info.split.iter().all(|(key, options)| {
                        if ns.as_ref().is_some_and(|p| !key.starts_with(p.as_str())) {
                            return true;
                        }
                        match props.get(key) {
                            Some(p) if !p.is_empty() => options.contains(p),
                            _ => true,
                        }
                    })
                }))
            }
            FilterKind::IsolatedHosts => {
                let restrict = cfg.restrict_isolated_hosts_to_isolated_images;
                let (pass_iso, pass_other) = if cfg.isolated_images.is_empty() {
                    (!restrict, true)
                } else {
                    let image_isolated = input.image_id.as_ref().is_some_and(|id| cfg.isolated_images.contains(id));
                    if restrict {
                        (image_isolated, !image_isolated)
                    } else {
                        (true, !image_isolated)
                    }
                };
                if pass_iso == pass_other {
                    if pass_iso {
                        Test::AllPass
                    } else {
                        Test::AllFail
                    }
                } else {
                    let iso: HashSet<&String> = cfg.isolated_hosts.iter().collect();
                    Test::Rows(t.names.iter().map(|n| if iso.contains(n) { pass_iso } else { pass_other }).collect())
                }
            }
            FilterKind::IoOps => Test::IoOps(Limit::Uniform(cfg.max_io_ops_per_host)),
            FilterKind::AggregateIoOps => Test::IoOps(int_limit(t, "max_io_ops_per_host", cfg.max_io_ops_per_host)),
            FilterKind::NumInstances => Test::NumInstances(Limit::Uniform(cfg.max_instances_per_host)),
            FilterKind::AggregateNumInstances => {
                Test::NumInstances(int_limit(t, "max_instances_per_host", cfg.max_instances_per_host))
            }
            FilterKind::Metrics => {
                if cfg.metrics_weight_setting.is_empty() {
                    Test::AllPass
                } else {
                    Test::Metrics(cfg.metrics_weight_setting.iter().map(|(n, _)| n.clone()).collect())
                }
            }
        })
    }

    /// The per-request values of a row before any consumption.
    #[inline]
    pub fn base_dyn(&self, r: usize, uuid: &str) -> Dyn {
        let t = self.t;
        Dyn {
            num_io_ops: t.num_io_ops[r],
            num_instances: t.num_instances[r],
            members: if self.base_members.is_empty() { 0 } else { self.base_members.get(&(r as u32)).copied().unwrap_or(0) },
            uuid_here: self.uuids_preexisting && t.instance_host.get(uuid) == Some(&(r as u32)),
            in_group_hosts: self.group_host_rows.contains(&(r as u32)),
            group_hosts_nonempty: self.req.group.as_ref().is_some_and(|g| !g.hosts.is_empty()),
        }
    }

    /// Whether row `r` passes `c`, with `extra_used` already claimed on it by this
    /// request and `d` its per-request values.
    #[inline]
    pub fn passes(&self, c: &Check, r: usize, d: &Dyn) -> bool {
        let t = self.t;
        match &c.test {
            Test::Disabled => t.enabled[r],
            Test::Resource { rc, amount } => t.rc[*rc].fits(r, *amount, 0),
            Test::TraitSets(ok) => ok[t.traitset[r] as usize],
            Test::AggSets(ok) => ok[t.aggset[r] as usize],
            Test::Rows(ok) => ok[r],
            Test::AllPass => true,
            Test::AllFail => false,
            Test::Up => t.up[r],
            Test::Capabilities(specs) => specs.iter().all(|s| self.capability_passes(s, r)),
            Test::Image { triple_ok, check_version, check_bits } => {
                if !triple_ok[t.supported[r] as usize] {
                    return false;
                }
                if *check_version {
                    let hv = t.hypervisor_version[r];
                    if hv != 0 {
                        let pred = self.req.img_hv_requested_version.as_ref().expect("checked");
                        if !version_satisfies(pred, &version_from_int(hv)) {
                            return false;
                        }
                    }
                }
                if *check_bits {
                    let bits = t.maxphysaddr_bits[r];
                    if bits != 0.0 && !(bits >= self.req.img_maxphysaddr_bits.unwrap_or(0) as f64) {
                        return false;
                    }
                }
                true
            }
            Test::AntiAffinity { max } => d.uuid_here || d.members < *max,
            Test::Affinity => !d.group_hosts_nonempty || d.in_group_hosts,
            Test::IoOps(limit) => d.num_io_ops < limit.get(t.aggset[r]),
            Test::NumInstances(limit) => d.num_instances < limit.get(t.aggset[r]),
            Test::Metrics(names) => names.iter().all(|n| t.metrics[r].contains_key(n)),
        }
    }

    fn capability_passes(&self, s: &CapSpec, r: usize) -> bool {
        let t = self.t;
        match &s.source {
            CapSource::FailAll => false,
            CapSource::Stats { ok, missing_passes } => ok[t.stats[r] as usize].unwrap_or(*missing_passes),
            CapSource::CpuInfo(ok) => ok[t.cpu_info[r] as usize],
            CapSource::Attr(a) => {
                let v = attr_str(t, *a, r);
                matches(Some(&v), &s.req)
            }
        }
    }

    /// Checks that run in pass `index` (placement stage excluded).
    pub fn pass_checks(&self, index: usize) -> Vec<&Check> {
        self.pass.iter().filter(|c| index == 0 || c.filter.is_none_or(|f| !f.once_per_request())).collect()
    }

    /// Placement stage plus pass 0 over every row, fused into one sweep.
    pub fn first_pass(&self) -> PassOutcome {
        let mut checks: Vec<&Check> = self.placement.iter().collect();
        checks.extend(self.pass_checks(0));
        let uuid = self.req.input.instance_uuids[0].as_str();
        let mut out = self.sweep(&checks, 0..self.t.len(), uuid);
        out.placement = self.placement.len();
        out
    }

    /// Runs `checks` over `rows` in order, column at a time over chunks of rows (and
    /// chunks in parallel for big tables). Each rejected host is counted against the
    /// first check it fails, as Nova's sequential filters count it.
    pub fn sweep(&self, checks: &[&Check], rows: std::ops::Range<usize>, uuid: &str) -> PassOutcome {
        let uuid_row = self.t.instance_host.get(uuid).copied();
        let prepared = self.prepare_checks(checks, uuid_row);
        let run = |range: std::ops::Range<usize>| {
            let mut out = PassOutcome { survivors: Vec::with_capacity(range.len()), counts: vec![0; checks.len()], ..Default::default() };
            let mut alive = [1u8; SWEEP_CHUNK];
            let mut pass = [0u8; SWEEP_CHUNK];
            let mut a = range.start;
            while a < range.end {
                let b = (a + SWEEP_CHUNK).min(range.end);
                let len = b - a;
                alive[..len].fill(1);
                let mut n_alive = len;
                // a whole zone with a clean summary: checks every host of it passes
                // are settled without reading a row
                let zone = (a % ZONE == 0 && (b == a + ZONE || b == self.t.len()))
                    .then(|| self.t.zones.clean(a / ZONE))
                    .flatten();
                for (k, c) in prepared.iter().enumerate() {
                    let Some(c) = c else { continue };
                    if zone.is_some_and(|z| self.zone_passes(c, z)) {
                        continue;
                    }
                    self.eval_chunk(c, a, &mut pass[..len], uuid);
                    // the common case: the check rejects nobody in this chunk
                    if pass[..len].iter().fold(1u8, |acc, &p| acc & p) == 1 {
                        continue;
                    }
                    let mut failed = 0u32;
                    for (al, &p) in alive[..len].iter_mut().zip(&pass[..len]) {
                        failed += (*al & !p & 1) as u32;
                        *al &= p;
                    }
                    out.counts[k] += failed as u64;
                    n_alive -= failed as usize;
                    if n_alive == 0 {
                        break;
                    }
                }
                if n_alive == len {
                    out.survivors.extend(a as u32..b as u32);
                    a = b;
                    continue;
                }
                // branch-free compaction: write every row, advance past the live ones
                let base = out.survivors.len();
                out.survivors.resize(base + len, 0);
                let dst = &mut out.survivors[base..];
                let mut kept = 0;
                for i in 0..len {
                    dst[kept] = (a + i) as u32;
                    kept += alive[i] as usize;
                }
                out.survivors.truncate(base + kept);
                a = b;
            }
            out
        };
        let n = rows.len();
        let mut out = if n < PAR_MIN {
            run(rows)
        } else {
            let start = rows.start;
            let parts: Vec<PassOutcome> = (0..n.div_ceil(PAR_CHUNK))
                .into_par_iter()
                .map(|i| run(start + i * PAR_CHUNK..(start + (i + 1) * PAR_CHUNK).min(rows.end)))
                .collect();
            let mut merged = PassOutcome { survivors: Vec::with_capacity(n), counts: vec![0; checks.len()], ..Default::default() };
            for p in parts {
                merged.survivors.extend_from_slice(&p.survivors);
                for (a, b) in merged.counts.iter_mut().zip(p.counts) {
                    *a += b;
                }
            }
            merged
        };
        out.checks = checks.iter().map(|c| c.name.clone()).collect();
        out
    }

    /// Drops checks that cannot reject anything (and exact repeats of an earlier
    /// check), and turns the per-request group tests into sparse row lists.
    fn prepare_checks<'c>(&self, checks: &[&'c Check], uuid_row: Option<u32>) -> Vec<Option<Prepared<'c>>> {
        let mut seen: Vec<&Test> = Vec::new();
        checks
            .iter()
            .map(|c| {
                let p = match &c.test {
                    Test::AllPass => return None,
                    Test::AntiAffinity { max } => {
                        let mut fail: Vec<u32> = self
                            .base_members
                            .iter()
                            .filter(|(r, n)| **n >= *max && Some(**r) != uuid_row)
                            .map(|(r, _)| *r)
                            .collect();
                        fail.sort_unstable();
                        Prepared::Sparse { rows: fail, listed_pass: false }
                    }
                    Test::Affinity => {
                        if self.req.group.as_ref().is_some_and(|g| !g.hosts.is_empty()) {
                            let mut rows: Vec<u32> = self.group_host_rows.iter().copied().collect();
                            rows.sort_unstable();
                            Prepared::Sparse { rows, listed_pass: true }
                        } else {
                            return None;
                        }
                    }
                    t @ (Test::IoOps(Limit::Uniform(_)) | Test::NumInstances(Limit::Uniform(_))) => {
                        let dup = seen.iter().any(|s| match (s, t) {
                            (Test::IoOps(Limit::Uniform(x)), Test::IoOps(Limit::Uniform(y))) => x == y,
                            (Test::NumInstances(Limit::Uniform(x)), Test::NumInstances(Limit::Uniform(y))) => x == y,
                            _ => false,
                        });
                        seen.push(t);
                        if dup {
                            return None;
                        }
                        Prepared::Check(c)
                    }
                    _ => Prepared::Check(c),
                };
                Some(p)
            })
            .collect()
    }

    /// Whether every host of a zone passes `c`, by its summary alone.
    fn zone_passes(&self, c: &Prepared, z: &ZoneSummary) -> bool {
        let Prepared::Check(c) = c else { return false };
        // the smallest limit any host of the zone is under
        let by_aggset = |l: &Limit| match l {
            Limit::Uniform(v) => Some(*v),
            Limit::ByAggset(v) => z.aggsets.iter().map(|&a| v[a as usize]).min(),
        };
        match &c.test {
            Test::AllPass => true,
            Test::Disabled => z.n_disabled == 0,
            Test::Up => z.n_down == 0,
            Test::Resource { rc, amount } => z.min_fit[*rc] >= *amount && !z.unit_constrained[*rc],
            Test::IoOps(l) => by_aggset(l).is_some_and(|l| z.max_io_ops < l),
            Test::NumInstances(l) => by_aggset(l).is_some_and(|l| z.max_num_instances < l),
            Test::AggSets(ok) => !z.aggsets.is_empty() && z.aggsets.iter().all(|&a| ok[a as usize]),
            Test::TraitSets(ok) => !z.traitsets.is_empty() && z.traitsets.iter().all(|&t| ok[t as usize]),
            _ => false,
        }
    }

    /// `pass[i]` = 1 when row `a + i` passes.
    fn eval_chunk(&self, c: &Prepared, a: usize, pass: &mut [u8], uuid: &str) {
        let t = self.t;
        let n = pass.len();
        let b = a + n;
        match c {
            Prepared::Sparse { rows, listed_pass } => {
                pass.fill(!listed_pass as u8);
                let lo = rows.partition_point(|&r| (r as usize) < a);
                for &r in &rows[lo..] {
                    if r as usize >= b {
                        break;
                    }
                    pass[r as usize - a] = *listed_pass as u8;
                }
            }
            Prepared::Check(c) => match &c.test {
                Test::Disabled => {
                    for (p, &e) in pass.iter_mut().zip(&t.enabled[a..b]) {
                        *p = e as u8;
                    }
                }
                Test::Up => {
                    for (p, &e) in pass.iter_mut().zip(&t.up[a..b]) {
                        *p = e as u8;
                    }
                }
                Test::Resource { rc, amount } => {
                    let col = &t.rc[*rc];
                    for (p, &f) in pass.iter_mut().zip(&col.fit[a..b]) {
                        *p = (f >= *amount) as u8;
                    }
                    if col.unit_constrained > 0 {
                        for (i, p) in pass.iter_mut().enumerate() {
                            let r = a + i;
                            *p &= (*amount >= col.min_unit[r] && *amount % col.step_size[r] == 0) as u8;
                        }
                    }
                }
                Test::TraitSets(ok) => {
                    for (p, &s) in pass.iter_mut().zip(&t.traitset[a..b]) {
                        *p = ok[s as usize] as u8;
                    }
                }
                Test::AggSets(ok) => {
                    for (p, &s) in pass.iter_mut().zip(&t.aggset[a..b]) {
                        *p = ok[s as usize] as u8;
                    }
                }
                Test::Rows(ok) => {
                    for (p, &o) in pass.iter_mut().zip(&ok[a..b]) {
                        *p = o as u8;
                    }
                }
                Test::AllFail => pass.fill(0),
                Test::AllPass => pass.fill(1),
                Test::IoOps(Limit::Uniform(l)) => {
                    for (p, &v) in pass.iter_mut().zip(&t.num_io_ops[a..b]) {
                        *p = (v < *l) as u8;
                    }
                }
                Test::NumInstances(Limit::Uniform(l)) => {
                    for (p, &v) in pass.iter_mut().zip(&t.num_instances[a..b]) {
                        *p = (v < *l) as u8;
                    }
                }
                Test::IoOps(Limit::ByAggset(l)) => {
                    for (i, p) in pass.iter_mut().enumerate() {
                        *p = (t.num_io_ops[a + i] < l[t.aggset[a + i] as usize]) as u8;
                    }
                }
                Test::NumInstances(Limit::ByAggset(l)) => {
                    for (i, p) in pass.iter_mut().enumerate() {
                        *p = (t.num_instances[a + i] < l[t.aggset[a + i] as usize]) as u8;
                    }
                }
                _ => {
                    for (i, p) in pass.iter_mut().enumerate() {
                        let r = a + i;
                        let d = if c.per_instance { self.base_dyn(r, uuid) } else { Dyn::default() };
                        *p = self.passes(c, r, &d) as u8;
                    }
                }
            },
        }
    }
}

/// Rows per chunk of a sweep: one zone, so a chunk can be settled by its summary
/// (and the pass bytes and column slices stay in L1/L2).
const SWEEP_CHUNK: usize = ZONE;

enum Prepared<'c> {
    Check(&'c Check),
    /// Only `rows` (sorted) differ from the rest: they pass iff `listed_pass`.
    Sparse { rows: Vec<u32>, listed_pass: bool },
}

/// What a pass left and whom each check removed.
#[derive(Clone, Debug, Default)]
pub struct PassOutcome {
    pub survivors: Vec<u32>,
    pub counts: Vec<u64>,
    pub checks: Vec<String>,
    /// How many leading checks form the Placement stage: one query, always reported
    /// whole; the pass after it stops at the step that leaves no host.
    pub placement: usize,
}

impl PassOutcome {
    /// `(check, hosts removed)` in order; when nothing survived, the pass is cut after
    /// the step that removed the last host (Nova stops filtering there), and it is
    /// left out entirely when the Placement stage already removed every host.
    pub fn rejections(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.checks.iter().cloned().zip(self.counts.iter().copied()).collect();
        if self.survivors.is_empty() {
            let last = self.counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
            v.truncate(last.max(self.placement).min(v.len()));
        }
        v
    }
}

/// `str(getattr(host_state, attr))` for a modelled attribute.
pub fn attr_str(t: &Table, a: Attr, r: usize) -> String {
    match a {
        Attr::Host => t.names[r].clone(),
        Attr::Uuid => t.uuids[r].clone(),
        Attr::HypervisorType => t.strings.get(t.hypervisor_type[r]).clone(),
        Attr::HypervisorVersion => t.hypervisor_version[r].to_string(),
        Attr::FreeRamMb => t.free_ram_mb[r].to_string(),
        Attr::FreeDiskMb => t.free_disk_mb[r].to_string(),
        Attr::TotalUsableRamMb => t.rc[1].total[r].to_string(),
        Attr::TotalUsableDiskGb => t.rc[2].total[r].to_string(),
        Attr::DiskMbUsed => ((t.rc[2].total[r]) * 1024 - t.free_disk_mb[r]).to_string(),
        Attr::VcpusTotal => t.rc[0].total[r].to_string(),
        Attr::VcpusUsed => t.vcpus_used[r].to_string(),
        Attr::NumInstances => t.num_instances[r].to_string(),
        Attr::NumIoOps => t.num_io_ops[r].to_string(),
        Attr::FailedBuilds => t.failed_builds[r].to_string(),
        Attr::CpuAllocationRatio => float_str(t.rc[0].allocation_ratio[r]),
        Attr::RamAllocationRatio => float_str(t.rc[1].allocation_ratio[r]),
        Attr::DiskAllocationRatio => float_str(t.rc[2].allocation_ratio[r]),
        Attr::CellUuid => t.cell_name(r).to_string(),
        Attr::HostIp => t.host_ip[r].clone(),
    }
}

/// Walks a JSON value as `_get_capabilities` walks a string/dict chain.
fn walk_json<'v>(mut cap: std::borrow::Cow<'v, Value>, scope: &[String]) -> Option<std::borrow::Cow<'v, Value>> {
    for key in scope {
        let next = match cap.as_ref() {
            Value::Object(m) => m.get(key).cloned(),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m.get(key).cloned(),
                _ => None,
            },
            _ => None,
        };
        match next {
            Some(Value::Null) | None => return None,
            Some(v) => cap = std::borrow::Cow::Owned(v),
        }
    }
    Some(cap)
}

/// ComputeCapabilitiesFilter's specs for this request, each bound to its source.
fn capability_specs(t: &Table, req: &Request) -> Vec<CapSpec> {
    let mut specs: BTreeMap<String, String> = req.input.extra_specs.iter().cloned().collect();
    if let Some(bits) = specs.remove("hw:maxphysaddr_bits") {
        specs.insert("capabilities:cpu_info:maxphysaddr:bits".into(), format!(">= {bits}"));
    }
    let mut out = Vec::new();
    for (key, req_s) in specs {
        let parts: Vec<String> = key.split(':').map(String::from).collect();
        let unscoped = parts.len() == 1;
        let scope: Vec<String> = if unscoped {
            let known = attr_by_name(&key).is_some()
                || key == "cpu_info"
                || OBJECT_ATTRS.contains(&key.as_str())
                || t.stats_sets.iter().any(|(_, s)| s.iter().any(|(k, _)| *k == key));
            if !known {
                continue;
            }
            parts
        } else if parts[0] == "capabilities" {
            parts[1..].to_vec()
        } else {
            continue;
        };
        let first = scope[0].as_str();
        let source = if first == "cpu_info" {
            // Nova's cpu_info is a JSON string: the walk parses it
            let ok = t
                .cpu_infos
                .iter()
                .map(|(_, text)| {
                    let root = std::borrow::Cow::Owned(Value::String(text.clone()));
                    walk_json(root, &scope[1..]).is_some_and(|v| matches(Some(&json_str(&v)), &req_s))
                })
                .collect();
            CapSource::CpuInfo(ok)
        } else if let Some(a) = attr_by_name(first) {
            if scope.len() > 1 {
                // walking into a plain value: Nova's getattr/stats lookup fails
                CapSource::FailAll
            } else {
                CapSource::Attr(a)
            }
        } else if OBJECT_ATTRS.contains(&first) {
            CapSource::FailAll
        } else {
            // getattr(host_state, key) is None: Nova falls back to host_state.stats
            let ok = t
                .stats_sets
                .iter()
                .map(|(_, stats)| {
                    let v = stats.iter().find(|(k, _)| k == first).map(|(_, v)| v.clone());
                    match v {
                        None => None,
                        Some(v) => {
                            let v = Value::String(v);
                            walk_json(std::borrow::Cow::Owned(v), &scope[1..]).map(|c| matches(Some(&json_str(&c)), &req_s))
                        }
                    }
                })
                .collect();
            CapSource::Stats { ok, missing_passes: unscoped }
        };
        out.push(CapSpec { source, req: req_s });
    }
    out
}

pub fn no_valid_host(index: usize, rejections: Vec<(String, u64)>) -> CoreError {
    let summary: Vec<String> = rejections.iter().filter(|(_, c)| *c > 0).map(|(n, c)| format!("{c} {n}")).collect();
    let message = if summary.is_empty() {
        format!("No valid host was found for instance {index}: there are no hosts")
    } else {
        format!("No valid host was found for instance {index}: hosts rejected by {}", summary.join(", "))
    };
    CoreError::NoValidHost { message, rejections, instance_index: index }
}
