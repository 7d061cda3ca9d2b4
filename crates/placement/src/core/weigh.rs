//! Nova's weighers over columns: raw value per host, clamp to `minval`, min-max
//! normalisation over the hosts of the pass, per-host multiplier (aggregate metadata
//! overrides the option, the minimum wins), summed in `weight_classes` order.

use rayon::prelude::*;

use super::checks::{Plan, PAR_CHUNK, PAR_MIN};
use super::config::WeigherKind;
use super::error::{CoreError, CoreResult};
use super::pyfmt::py_float;
use super::request::Policy;
use super::table::{Table, VCPU, ZONE};

/// The values of a host that change while a request places its instances.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vals {
    pub free_ram_mb: i64,
    pub free_disk_mb: i64,
    pub vcpus_used: i64,
    pub num_io_ops: i64,
    pub num_instances: i64,
    /// Server-group members on the host.
    pub members: i64,
    /// Instances of this request placed on the host, with a server group: Nova's
    /// `_consume_selected_host` puts a stub of each into the host's instances,
    /// which ImagePropertiesWeigher then counts with the request's image.
    pub image_stubs: i64,
}

impl Vals {
    #[inline]
    pub fn base(plan: &Plan, r: usize) -> Vals {
        let t = plan.t;
        Vals {
            free_ram_mb: t.free_ram_mb[r],
            free_disk_mb: t.free_disk_mb[r],
            vcpus_used: t.vcpus_used[r],
            num_io_ops: t.num_io_ops[r],
            num_instances: t.num_instances[r],
            members: if plan.base_members.is_empty() { 0 } else { plan.base_members.get(&(r as u32)).copied().unwrap_or(0) },
            image_stubs: 0,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Mult {
    Uniform(f64),
    ByAggset(Vec<f64>),
}

impl Mult {
    #[inline]
    pub fn get(&self, t: &Table, r: usize) -> f64 {
        match self {
            Mult::Uniform(m) => *m,
            Mult::ByAggset(v) => v[t.aggset[r] as usize],
        }
    }

    fn all_zero(&self) -> bool {
        match self {
            Mult::Uniform(m) => *m == 0.0,
            Mult::ByAggset(v) => v.iter().all(|m| *m == 0.0),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Weigher {
    pub kind: WeigherKind,
    pub minval: Option<f64>,
    pub mult: Mult,
    /// The raw value can change when a host is consumed within one request.
    pub dynamic: bool,
}

/// Normalisation bounds of one weigher over one pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Norm {
    pub lo: f64,
    pub hi: f64,
}

impl Norm {
    #[inline]
    pub fn apply(&self, raw: f64) -> f64 {
        if self.lo == self.hi {
            0.0
        } else {
            (raw - self.lo) / (self.hi - self.lo)
        }
    }

    /// Bit-exact equality (what decides whether weights must be recomputed).
    pub fn same(&self, o: &Norm) -> bool {
        self.lo.to_bits() == o.lo.to_bits() && self.hi.to_bits() == o.hi.to_bits()
    }
}

/// Rows of `rows` (sorted) that fall in one zone: `rows[start..end]`, and whether
/// they are the zone's every host.
#[derive(Clone, Copy, Debug)]
pub struct ZoneGroup {
    pub zone: usize,
    pub start: usize,
    pub end: usize,
    pub full: bool,
}

pub fn zone_groups(t: &Table, rows: &[u32]) -> Vec<ZoneGroup> {
    let n = t.len();
    let mut out = Vec::with_capacity(n.div_ceil(ZONE).min(rows.len()));
    let mut i = 0;
    while i < rows.len() {
        let zone = rows[i] as usize / ZONE;
        let limit = ((zone + 1) * ZONE) as u32;
        let end = i + rows[i..].partition_point(|&r| r < limit);
        let zone_len = ZONE.min(n - zone * ZONE);
        out.push(ZoneGroup { zone, start: i, end, full: end - i == zone_len });
        i = end;
    }
    out
}

/// Index of a weigher's column in `WeighCols` (and in a zone summary).
fn wcol_index(kind: WeigherKind) -> Option<usize> {
    Some(match kind {
        WeigherKind::Ram => 0,
        WeigherKind::Disk => 1,
        WeigherKind::Cpu => 2,
        WeigherKind::IoOps => 3,
        WeigherKind::NumInstances => 4,
        WeigherKind::HypervisorVersion => 5,
        _ => return None,
    })
}

/// The float column holding a weigher's raw value (before clamping), if it has one.
fn base_column(t: &Table, kind: WeigherKind) -> Option<&[f64]> {
    let w = &t.wcols;
    Some(match kind {
        WeigherKind::Ram => &w.free_ram_mb,
        WeigherKind::Cpu => &w.cpu_free,
        WeigherKind::Disk => &w.free_disk_mb,
        WeigherKind::IoOps => &w.num_io_ops,
        WeigherKind::NumInstances => &w.num_instances,
        WeigherKind::HypervisorVersion => &w.hypervisor_version,
        _ => return None,
    })
}

/// `Some((first, last + 1))` when `rows` are consecutive.
#[inline]
fn contiguous_run(rows: &[u32]) -> Option<(usize, usize)> {
    let (&f, &l) = (rows.first()?, rows.last()?);
    ((l - f) as usize == rows.len() - 1).then_some((f as usize, l as usize + 1))
}

/// Min and max of a slice (no NaN reaches here: raw values are finite).
#[inline]
pub fn min_max(xs: &[f64]) -> (f64, f64) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    {
        use std::arch::x86_64::*;
        let mut chunks = xs.chunks_exact(8);
        // SAFETY: AVX is enabled for this build (cfg above); loads are unaligned and
        // stay within each 8-element chunk.
        let (mut lo, mut hi) = unsafe {
            let mut lo0 = _mm256_set1_pd(f64::INFINITY);
            let mut lo1 = lo0;
            let mut hi0 = _mm256_set1_pd(f64::NEG_INFINITY);
            let mut hi1 = hi0;
            for c in &mut chunks {
                let a = _mm256_loadu_pd(c.as_ptr());
                let b = _mm256_loadu_pd(c.as_ptr().add(4));
                lo0 = _mm256_min_pd(lo0, a);
                lo1 = _mm256_min_pd(lo1, b);
                hi0 = _mm256_max_pd(hi0, a);
                hi1 = _mm256_max_pd(hi1, b);
            }
            let mut l = [0f64; 4];
            let mut h = [0f64; 4];
            _mm256_storeu_pd(l.as_mut_ptr(), _mm256_min_pd(lo0, lo1));
            _mm256_storeu_pd(h.as_mut_ptr(), _mm256_max_pd(hi0, hi1));
            (l.iter().copied().fold(f64::INFINITY, f64::min), h.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        };
        for &x in chunks.remainder() {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        (lo, hi)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
    {
        xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)))
    }
}

/// Hosts per chunk of a weighing pass (the raw buffer stays in L1).
const WEIGH_CHUNK: usize = 1024;

pub struct WeighPlan {
    /// The weighers that can change some host's weight, in `weight_classes` order.
    pub weighers: Vec<Weigher>,
    cross_cell: Option<u32>,
    soft_policy: Option<Policy>,
    image_props: Vec<(String, String)>,
}

/// `get_weight_multiplier`: the minimum of the aggregates' values, else the option.
fn multiplier(t: &Table, option: &str, default: f64, negate: bool) -> Mult {
    let sign = if negate { -1.0 } else { 1.0 };
    if !t.aggset_info.iter().any(|i| i.raw.contains_key(option)) {
        return Mult::Uniform(sign * default);
    }
    Mult::ByAggset(
        t.aggset_info
            .iter()
            .map(|info| {
                let v = match info.raw.get(option) {
                    None => default,
                    Some(vals) => {
                        // a value float() refuses makes Nova fall back to the option; so
                        // does (here) a NaN, or a minimum that is not finite
                        let parsed: Option<Vec<f64>> = vals.iter().map(|v| py_float(v)).collect();
                        match parsed {
                            Some(p) if !p.iter().any(|x| x.is_nan()) => {
                                let m = p.into_iter().fold(f64::INFINITY, f64::min);
                                if m.is_finite() {
                                    m
                                } else {
                                    default
                                }
                            }
                            _ => default,
                        }
                    }
                };
                sign * v
            })
            .collect(),
    )
}

impl WeighPlan {
    pub fn new(plan: &Plan) -> Self {
        let t = plan.t;
        let cfg = plan.cfg;
        let input = &plan.req.input;
        let cross_cell = match (&input.requested_cell, input.allow_cross_cell_move) {
            (Some(c), true) if !c.is_empty() => Some(t.strings.lookup(c).unwrap_or(u32::MAX)),
            _ => None,
        };
        let soft_policy = plan.req.group.as_ref().map(|g| g.policy);
        let mut weighers = Vec::new();
        for &kind in &cfg.weighers {
            let mult = multiplier(t, kind.option(), cfg.multiplier(kind), kind == WeigherKind::BuildFailure);
            // Skip a weigher whose contribution is exactly 0 on every host: a zero
            // multiplier everywhere, or a raw value that is the same for every host
            // (normalised to 0). MetricsWeigher stays, as it may have to raise.
            let constant = match kind {
                WeigherKind::CrossCell => cross_cell.is_none(),
                WeigherKind::Pci => t.nonzero_free_pci == 0,
                WeigherKind::BuildFailure => t.nonzero_failed_builds == 0,
                WeigherKind::SoftAffinity => soft_policy != Some(Policy::SoftAffinity),
                WeigherKind::SoftAntiAffinity => soft_policy != Some(Policy::SoftAntiAffinity),
                WeigherKind::Metrics => cfg.metrics_weight_setting.is_empty(),
                // Nova returns 0 for every host when the *option* is 0
                WeigherKind::ImageProperties => {
                    cfg.multiplier(kind) == 0.0
                        || input.image_properties.is_empty()
                        || (t.instance_image.is_empty() && plan.req.group.is_none())
                }
                _ => false,
            };
            let keep = if kind == WeigherKind::Metrics {
                !cfg.metrics_weight_setting.is_empty()
            } else {
                !constant && !mult.all_zero()
            };
            if keep {
                let dynamic = matches!(
                    kind,
                    WeigherKind::Ram
                        | WeigherKind::Cpu
                        | WeigherKind::Disk
                        | WeigherKind::IoOps
                        | WeigherKind::NumInstances
                        | WeigherKind::SoftAffinity
                        | WeigherKind::SoftAntiAffinity
                ) || (kind == WeigherKind::ImageProperties && plan.req.group.is_some());
                weighers.push(Weigher { kind, minval: kind.minval(), mult, dynamic });
            }
        }
        let image_props = input.image_properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        WeighPlan { weighers, cross_cell, soft_policy, image_props }
    }

    /// The clamped raw value (`_weigh_object`, then `max(raw, minval)`).
    #[inline]
    pub fn raw(&self, plan: &Plan, w: &Weigher, r: usize, v: &Vals) -> f64 {
        let t = plan.t;
        let x = match w.kind {
            WeigherKind::Ram => v.free_ram_mb as f64,
            WeigherKind::Cpu => t.rc[VCPU].total[r] as f64 * t.rc[VCPU].allocation_ratio[r] - v.vcpus_used as f64,
            WeigherKind::Disk => v.free_disk_mb as f64,
            WeigherKind::IoOps => v.num_io_ops as f64,
            WeigherKind::NumInstances => v.num_instances as f64,
            WeigherKind::HypervisorVersion => t.hypervisor_version[r] as f64,
            WeigherKind::BuildFailure => t.failed_builds[r] as f64,
            WeigherKind::CrossCell => match self.cross_cell {
                Some(c) if t.cell[r] == c => 1.0,
                Some(_) => -1.0,
                None => 0.0,
            },
            WeigherKind::Pci => (100 - t.free_pci_devs[r].min(99)) as f64,
            WeigherKind::SoftAffinity => {
                if self.soft_policy == Some(Policy::SoftAffinity) {
                    v.members as f64
                } else {
                    0.0
                }
            }
            WeigherKind::SoftAntiAffinity => {
                if self.soft_policy == Some(Policy::SoftAntiAffinity) {
                    -(v.members as f64)
                } else {
                    0.0
                }
            }
            WeigherKind::Metrics => self.metrics_raw(plan, w, r),
            WeigherKind::ImageProperties => self.image_props_raw(plan, r, v.image_stubs),
        };
        match w.minval {
            Some(m) if x < m => m,
            _ => x,
        }
    }

    fn metrics_raw(&self, plan: &Plan, w: &Weigher, r: usize) -> f64 {
        let cfg = plan.cfg;
        let metrics = &plan.t.metrics[r];
        let mut value = 0.0;
        for (name, ratio) in &cfg.metrics_weight_setting {
            match metrics.get(name) {
                Some(m) => value += m * ratio,
                None => {
                    // a missing required metric was reported by check_metrics already
                    if ratio * w.mult.get(plan.t, r) != 0.0 {
                        return cfg.metrics_weight_of_unavailable;
                    }
                }
            }
        }
        value
    }

    /// ImagePropertiesWeigher's raw value: each (property, value) pair of the
    /// request's image counted over the images of the host's instances, ``stubs``
    /// of them this request's own (booted from the request's image).
    fn image_props_raw(&self, plan: &Plan, r: usize, stubs: i64) -> f64 {
        let t = plan.t;
        let setting = &plan.cfg.image_props_weight_setting;
        let mut counts: std::collections::BTreeMap<&(String, String), usize> = Default::default();
        if stubs > 0 {
            for pair in &self.image_props {
                counts.insert(pair, stubs as usize);
            }
        }
        for uuid in &t.host_instances[r] {
            let Some(&p) = t.instance_image.get(uuid) else { continue };
            for pair in t.image_props.get(p) {
                if self.image_props.contains(pair) {
                    *counts.entry(pair).or_insert(0) += 1;
                }
            }
        }
        let mut weight = 0.0;
        for (pair, n) in counts {
            if setting.is_empty() {
                weight += n as f64;
            } else {
                let s = setting.iter().find(|(k, _)| *k == pair.0).map(|(_, v)| *v).unwrap_or(0.0);
                weight += s * n as f64;
            }
        }
        weight
    }

    /// Nova's MetricsWeigher raises when a host lacks a metric `[metrics] required`
    /// names; so does this, before any weight is computed.
    pub fn check_metrics(&self, plan: &Plan, rows: &[u32]) -> CoreResult<()> {
        let cfg = plan.cfg;
        if !cfg.metrics_required || !self.weighers.iter().any(|w| w.kind == WeigherKind::Metrics) || rows.len() <= 1 {
            return Ok(());
        }
        for &r in rows {
            for (name, _) in &cfg.metrics_weight_setting {
                if !plan.t.metrics[r as usize].contains_key(name) {
                    return Err(CoreError::Placement(format!(
                        "host {:?} does not report metric {name:?}, which [metrics] weight_setting requires",
                        plan.t.names[r as usize]
                    )));
                }
            }
        }
        Ok(())
    }

    /// Raw (clamped) values of weigher `w` for `rows`, before any consumption.
    pub fn raw_base(&self, plan: &Plan, w: &Weigher, rows: &[u32], out: &mut [f64]) {
        let t = plan.t;
        let m = w.minval.unwrap_or(f64::NEG_INFINITY);
        let clamp = |x: f64| if x < m { m } else { x };
        // Survivors are usually a run of consecutive rows: then read the columns as
        // slices (no gather, no bounds checks), which the compiler vectorizes.
        let contiguous = rows.len() > 1 && (rows[rows.len() - 1] - rows[0]) as usize == rows.len() - 1;
        let (a, b) = if rows.is_empty() { (0, 0) } else { (rows[0] as usize, rows[rows.len() - 1] as usize + 1) };
        macro_rules! fill {
            ($col:expr) => {
                if contiguous {
                    for (o, &v) in out.iter_mut().zip(&$col[a..b]) {
                        *o = clamp(v);
                    }
                } else {
                    for (o, &r) in out.iter_mut().zip(rows) {
                        *o = clamp($col[r as usize]);
                    }
                }
            };
        }
        let wc = &t.wcols;
        match w.kind {
            WeigherKind::Ram => fill!(wc.free_ram_mb),
            WeigherKind::Cpu => fill!(wc.cpu_free),
            WeigherKind::Disk => fill!(wc.free_disk_mb),
            WeigherKind::IoOps => fill!(wc.num_io_ops),
            WeigherKind::NumInstances => fill!(wc.num_instances),
            WeigherKind::HypervisorVersion => fill!(wc.hypervisor_version),
            _ => {
                for (o, &r) in out.iter_mut().zip(rows) {
                    *o = self.raw(plan, w, r as usize, &Vals::base(plan, r as usize));
                }
            }
        }
    }

    /// Normalisation bounds of every weigher over `rows` (no consumption yet). A zone
    /// whose every host is in `rows` contributes its summary's min and max instead
    /// of a pass over its hosts.
    pub fn norms(&self, plan: &Plan, rows: &[u32]) -> Vec<Norm> {
        let k = self.weighers.len();
        let t = plan.t;
        let fold = |groups: &[ZoneGroup]| {
            let mut lo = vec![f64::INFINITY; k];
            let mut hi = vec![f64::NEG_INFINITY; k];
            let mut buf = [0f64; WEIGH_CHUNK];
            for g in groups {
                let summary = if g.full { t.zones.clean(g.zone) } else { None };
                for (i, w) in self.weighers.iter().enumerate() {
                    let (l, h) = match (summary, wcol_index(w.kind)) {
                        (Some(z), Some(c)) => (z.wmin[c], z.wmax[c]),
                        _ => {
                            let mut l = f64::INFINITY;
                            let mut h = f64::NEG_INFINITY;
                            for part in rows[g.start..g.end].chunks(WEIGH_CHUNK) {
                                let (pl, ph) = match (contiguous_run(part), base_column(t, w.kind)) {
                                    (Some((a, b)), Some(col)) => min_max(&col[a..b]),
                                    _ => {
                                        let buf = &mut buf[..part.len()];
                                        self.raw_base(plan, w, part, buf);
                                        min_max(buf)
                                    }
                                };
                                l = l.min(pl);
                                h = h.max(ph);
                            }
                            (l, h)
                        }
                    };
                    // min and max of the clamped values are those of the raw values, clamped
                    let m = w.minval.unwrap_or(f64::NEG_INFINITY);
                    lo[i] = lo[i].min(if l < m { m } else { l });
                    hi[i] = hi[i].max(if h < m { m } else { h });
                }
            }
            (lo, hi)
        };
        let groups = zone_groups(t, rows);
        let (lo, hi) = if rows.len() < PAR_MIN {
            fold(&groups)
        } else {
            groups.par_chunks(PAR_CHUNK / ZONE).map(fold).reduce(
                || (vec![f64::INFINITY; k], vec![f64::NEG_INFINITY; k]),
                |(mut l1, mut h1), (l2, h2)| {
                    for i in 0..k {
                        l1[i] = l1[i].min(l2[i]);
                        h1[i] = h1[i].max(h2[i]);
                    }
                    (l1, h1)
                },
            )
        };
        self.weighers
            .iter()
            .enumerate()
            .map(|(i, w)| Norm { lo: w.minval.unwrap_or(lo[i]), hi: hi[i] })
            .collect()
    }

    /// An upper bound of the total weight of any host of zone `g` (Nova's sum, with
    /// each weigher's term at its largest over the zone's summary): every rounding
    /// step is monotone, so no host's exact weight can exceed it. Infinite when the
    /// zone or a weigher has no summary to bound with.
    pub fn zone_bound(&self, t: &Table, g: &ZoneGroup, norms: &[Norm]) -> f64 {
        let Some(z) = t.zones.clean(g.zone) else { return f64::INFINITY };
        let mut bound = 0.0;
        for (w, n) in self.weighers.iter().zip(norms) {
            if n.lo == n.hi {
                continue;
            }
            let Some(c) = wcol_index(w.kind) else { return f64::INFINITY };
            let clamp = |x: f64| match w.minval {
                Some(mv) if x < mv => mv,
                _ => x,
            };
            let term = |m: f64| m * n.apply(clamp(if m >= 0.0 { z.wmax[c] } else { z.wmin[c] }));
            bound += match &w.mult {
                Mult::Uniform(m) => term(*m),
                // the largest term any of the zone's multipliers can give
                Mult::ByAggset(ms) if !z.aggsets.is_empty() => {
                    z.aggsets.iter().map(|&a| term(ms[a as usize])).fold(f64::NEG_INFINITY, f64::max)
                }
                Mult::ByAggset(_) => return f64::INFINITY,
            };
        }
        bound
    }

    /// Total weight of each of `rows` (no consumption yet): per host,
    /// `0.0 + m1*n1 + m2*n2 + ...` in weigher order, as Nova adds them.
    pub fn totals(&self, plan: &Plan, rows: &[u32], norms: &[Norm]) -> Vec<f64> {
        let t = plan.t;
        let one = |chunk: &[u32], out: &mut [f64]| {
            out.fill(0.0);
            let mut buf = [0f64; WEIGH_CHUNK];
            let mut start = 0;
            for part in chunk.chunks(WEIGH_CHUNK) {
                let buf = &mut buf[..part.len()];
                let o = &mut out[start..start + part.len()];
                let run = contiguous_run(part);
                for (w, n) in self.weighers.iter().zip(norms) {
                    if n.lo == n.hi {
                        continue;
                    }
                    let buf: &[f64] = match (run, base_column(plan.t, w.kind), w.minval) {
                        (Some((a, b)), Some(col), None) => &col[a..b],
                        _ => {
                            self.raw_base(plan, w, part, buf);
                            buf
                        }
                    };
                    let (lo, range) = (n.lo, n.hi - n.lo);
                    match &w.mult {
                        Mult::Uniform(m) => {
                            for (acc, &x) in o.iter_mut().zip(buf.iter()) {
                                *acc += m * ((x - lo) / range);
                            }
                        }
                        Mult::ByAggset(ms) => {
                            for ((acc, &x), &r) in o.iter_mut().zip(buf.iter()).zip(part) {
                                *acc += ms[t.aggset[r as usize] as usize] * ((x - lo) / range);
                            }
                        }
                    }
                }
                start += part.len();
            }
        };
        let mut out = vec![0.0; rows.len()];
        if rows.len() < PAR_MIN {
            one(rows, &mut out);
        } else {
            out.par_chunks_mut(PAR_CHUNK).zip(rows.par_chunks(PAR_CHUNK)).for_each(|(o, r)| one(r, o));
        }
        out
    }

    /// One host's total weight.
    #[inline]
    pub fn total(&self, plan: &Plan, r: usize, v: &Vals, norms: &[Norm]) -> f64 {
        let mut weight = 0.0;
        for (w, n) in self.weighers.iter().zip(norms) {
            if n.lo == n.hi {
                continue;
            }
            weight += w.mult.get(plan.t, r) * n.apply(self.raw(plan, w, r, v));
        }
        weight
    }
}
