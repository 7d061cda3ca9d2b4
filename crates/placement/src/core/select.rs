//! `select_destinations`: Nova's `_schedule` with claims, `_get_sorted_hosts` and
//! `_get_alternate_hosts`, over the columnar table.
//!
//! One instance: one fused sweep (Placement stage + filters), one weighing, a
//! streaming pick. Several instances: the pass-0 survivors become a compact working
//! set; after each consumption only the consumed host is re-filtered and re-weighed,
//! and the whole set is renormalised only when some weigher's min or max moved.
//! Tie order follows Nova exactly: hosts of equal weight keep the order the previous
//! pass returned, which is tracked by a key per host.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};


use super::checks::{no_valid_host, Check, Dyn, PassOutcome, Plan};
use super::config::Config;
use super::error::{CoreError, CoreResult};
use super::request::Request;
use super::rng::PyRandom;
use super::table::{Table, N_RC, RC_NAMES};
use super::table::ZONE;
use super::weigh::{zone_groups, Norm, Vals, WeighPlan, ZoneGroup};

#[derive(Clone, Copy, Debug)]
pub struct SelectOptions {
    pub claim: bool,
    pub seed: u128,
    pub return_alternates: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pick {
    pub row: usize,
    pub weight: f64,
}

#[derive(Clone, Debug)]
pub struct Selection {
    pub instance_uuid: String,
    pub chosen: Pick,
    pub alternates: Vec<Pick>,
}

/// A successful select: one selection per instance, and what the Placement stage and
/// the first pass rejected on the way (the same counts a failure would report).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub selections: Vec<Selection>,
    pub rejections: Vec<(String, u64)>,
}

// ---------------------------------------------------------------------------------
// filter / weigh, the building blocks exposed on their own

/// The Placement stage plus pass `index` over every host (as if the previous pass
/// had returned every candidate).
pub fn filter(t: &Table, cfg: &Config, req: &Request, index: usize) -> CoreResult<PassOutcome> {
    let n = req.input.instance_uuids.len();
    let Some(uuid) = req.input.instance_uuids.get(index) else {
        return Err(CoreError::InvalidInput(format!("index {index} out of range for {n} instance(s)")));
    };
    let plan = Plan::new(t, cfg, req)?;
    let mut checks: Vec<&Check> = plan.placement.iter().collect();
    checks.extend(plan.pass_checks(index));
    let mut out = plan.sweep(&checks, 0..t.len(), uuid);
    out.placement = plan.placement.len();
    Ok(out)
}

/// Total weight per table row for the hosts `filter` keeps; NaN for the others.
pub fn weigh(t: &Table, cfg: &Config, req: &Request, index: usize) -> CoreResult<Vec<f64>> {
    let outcome = filter(t, cfg, req, index)?;
    let plan = Plan::new(t, cfg, req)?;
    let wp = WeighPlan::new(&plan);
    let mut out = vec![f64::NAN; t.len()];
    let s = &outcome.survivors;
    let weights = weights_of(&plan, &wp, s)?;
    for (i, &r) in s.iter().enumerate() {
        out[r as usize] = weights[i];
    }
    Ok(out)
}

/// Weights of `rows` (one pass, before any consumption), in parallel for big sets.
fn weights_of(plan: &Plan, wp: &WeighPlan, rows: &[u32]) -> CoreResult<Vec<f64>> {
    if rows.len() <= 1 {
        return Ok(vec![0.0; rows.len()]);
    }
    wp.check_metrics(plan, rows)?;
    let norms = wp.norms(plan, rows);
    Ok(wp.totals(plan, rows, &norms))
}

// ---------------------------------------------------------------------------------

/// (weight desc, key asc): Nova's `sorted(reverse=True)` over the previous order.
#[inline]
fn before(wa: f64, ka: i64, wb: f64, kb: i64) -> bool {
    wa > wb || (wa == wb && ka < kb)
}

/// Positions of the first `k` hosts in (weight desc, position asc) order.
fn sorted_prefix(w: &[f64], k: usize) -> Vec<u32> {
    let k = k.min(w.len());
    if k <= 16 {
        // one streaming pass keeping the best k, sorted
        let mut best: Vec<u32> = Vec::with_capacity(k + 1);
        for (p, &x) in w.iter().enumerate() {
            if best.len() == k {
                let last = best[k - 1] as usize;
                // positions only grow, so an equal weight never beats one already kept
                if !(x > w[last]) {
                    continue;
                }
                best.pop();
            }
            let at = best.partition_point(|&q| !before(x, p as i64, w[q as usize], q as i64));
            best.insert(at, p as u32);
        }
        return best;
    }
    let mut idx: Vec<u32> = (0..w.len() as u32).collect();
    let cmp = |a: &u32, b: &u32| {
        let (a, b) = (*a as usize, *b as usize);
        if before(w[a], a as i64, w[b], b as i64) {
            std::cmp::Ordering::Less
        } else if a == b {
            std::cmp::Ordering::Equal
        } else {
            std::cmp::Ordering::Greater
        }
    };
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable_by(cmp);
    idx
}

/// The weights of one pass, either all computed, or found lazily zone by zone:
/// zones are visited by descending upper bound, and a zone whose bound cannot beat
/// the k-th best host found so far is never weighed.
enum Weights<'p, 'a> {
    Full(Vec<f64>),
    Lazy(Box<Ranker<'p, 'a>>),
}

struct Ranker<'p, 'a> {
    plan: &'p Plan<'a>,
    wp: &'p WeighPlan,
    rows: &'p [u32],
    norms: Vec<Norm>,
    groups: Vec<ZoneGroup>,
    /// (bound, group index) by bound desc, then zone order
    order: Vec<(f64, usize)>,
    weighed: Vec<Option<Vec<f64>>>,
}

/// Below this many hosts, weighing them all costs less than bounding zones.
const LAZY_MIN: usize = 3 * ZONE;

impl<'p, 'a> Ranker<'p, 'a> {
    fn group_weights(&mut self, gi: usize) -> &[f64] {
        if self.weighed[gi].is_none() {
            let g = self.groups[gi];
            let w = self.wp.totals(self.plan, &self.rows[g.start..g.end], &self.norms);
            self.weighed[gi] = Some(w);
        }
        self.weighed[gi].as_deref().expect("just weighed")
    }

    /// The first `k` (position, weight) by (weight desc, position asc).
    fn prefix(&mut self, k: usize) -> Vec<(u32, f64)> {
        let mut best: Vec<(u32, f64)> = Vec::with_capacity(k + 1);
        for oi in 0..self.order.len() {
            let (bound, gi) = self.order[oi];
            if best.len() == k {
                let (kp, kw) = best[k - 1];
                // later zones are bounded by `bound`; among equal bounds they come in
                // row order, so they cannot hold an equal weight at a lower position
                if bound < kw || (bound == kw && self.groups[gi].start as u32 > kp) {
                    break;
                }
            }
            let start = self.groups[gi].start;
            let ws = self.group_weights(gi).to_vec();
            for (j, w) in ws.into_iter().enumerate() {
                let p = (start + j) as u32;
                if best.len() == k {
                    let (kp, kw) = best[k - 1];
                    if !before(w, p as i64, kw, kp as i64) {
                        continue;
                    }
                    best.pop();
                }
                let at = best.partition_point(|&(q, x)| before(x, q as i64, w, p as i64));
                best.insert(at, (p, w));
            }
        }
        best
    }

    /// Every position whose weight equals `top`, in position order.
    fn ties_with(&mut self, top: f64) -> Vec<u32> {
        let mut out = Vec::new();
        for oi in 0..self.order.len() {
            let (bound, gi) = self.order[oi];
            if bound < top {
                break;
            }
            let start = self.groups[gi].start;
            let ws = self.group_weights(gi).to_vec();
            out.extend(ws.iter().enumerate().filter(|(_, &w)| w == top).map(|(j, _)| (start + j) as u32));
        }
        out.sort_unstable();
        out
    }
}

impl<'p, 'a> Weights<'p, 'a> {
    fn new(plan: &'p Plan<'a>, wp: &'p WeighPlan, rows: &'p [u32]) -> CoreResult<Self> {
        if rows.len() <= 1 {
            return Ok(Weights::Full(vec![0.0; rows.len()]));
        }
        wp.check_metrics(plan, rows)?;
        let norms = wp.norms(plan, rows);
        if rows.len() < LAZY_MIN {
            return Ok(Weights::Full(wp.totals(plan, rows, &norms)));
        }
        let groups = zone_groups(plan.t, rows);
        let mut order: Vec<(f64, usize)> =
            groups.iter().enumerate().map(|(i, g)| (wp.zone_bound(plan.t, g, &norms), i)).collect();
        order.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1)));
        let weighed = vec![None; groups.len()];
        Ok(Weights::Lazy(Box::new(Ranker { plan, wp, rows, norms, groups, order, weighed })))
    }

    fn len(&self) -> usize {
        match self {
            Weights::Full(w) => w.len(),
            Weights::Lazy(r) => r.rows.len(),
        }
    }

    fn prefix(&mut self, k: usize) -> Vec<(u32, f64)> {
        match self {
            Weights::Full(w) => sorted_prefix(w, k).into_iter().map(|p| (p, w[p as usize])).collect(),
            Weights::Lazy(r) => r.prefix(k.min(r.rows.len())),
        }
    }

    fn ties_with_top(&mut self) -> Vec<u32> {
        match self {
            Weights::Full(w) => {
                let top = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (0..w.len() as u32).filter(|&p| w[p as usize] == top).collect()
            }
            Weights::Lazy(r) => {
                let top = r.prefix(1)[0].1;
                r.ties_with(top)
            }
        }
    }
}

/// The list one pass of `_get_sorted_hosts` returns, materialised lazily:
/// `[chosen] + (shuffled best group) + the rest in weight order`.
struct Ranked<'p, 'a> {
    weights: Weights<'p, 'a>,
    head: Vec<(u32, f64)>,
    sorted: Vec<(u32, f64)>,
    complete: bool,
    chosen: (u32, f64),
    chosen_pos: usize,
}

impl<'p, 'a> Ranked<'p, 'a> {
    fn new(mut weights: Weights<'p, 'a>, cfg: &Config, rng: &mut PyRandom) -> Self {
        let m = weights.len();
        let mut head = Vec::new();
        if cfg.shuffle_best_same_weighed_hosts {
            let mut best = weights.ties_with_top();
            rng.shuffle(&mut best);
            let top = weights.prefix(1)[0].1;
            head = best.into_iter().map(|p| (p, top)).collect();
        }
        let mut r = Ranked { weights, head, sorted: Vec::new(), complete: false, chosen: (0, 0.0), chosen_pos: 0 };
        let subset = cfg.host_subset_size.min(m);
        r.ensure(subset);
        let pick = rng.randbelow(subset);
        r.chosen = r.nth_before_choice(pick).expect("subset is within the list");
        r.chosen_pos = pick;
        r
    }

    fn ensure(&mut self, k: usize) {
        let need = self.head.len() + k;
        if self.complete || self.sorted.len() >= need {
            return;
        }
        let m = self.weights.len();
        let want = need.max(2 * self.sorted.len()).max(8).min(m);
        self.sorted = self.weights.prefix(want);
        self.complete = self.sorted.len() == m;
    }

    /// Element `i` of the sorted list before the chosen host was moved to the front.
    fn nth_before_choice(&mut self, i: usize) -> Option<(u32, f64)> {
        if i < self.head.len() {
            return Some(self.head[i]);
        }
        self.ensure(i + 1);
        // the best group is exactly the first head.len() of the plain order
        self.sorted.get(i).copied()
    }

    /// Element `i` of the returned list `[chosen] + rest`: (position, weight).
    fn nth(&mut self, i: usize) -> Option<(u32, f64)> {
        if i == 0 {
            return Some(self.chosen);
        }
        // the chosen host was element `chosen_pos` before it moved to the front
        let j = if i - 1 >= self.chosen_pos { i } else { i - 1 };
        self.nth_before_choice(j)
    }
}

/// The first resource class that does not fit `extra + amount` on `r`, if any.
#[inline]
fn claim_misfit(t: &Table, r: usize, amounts: &[i64; N_RC], extra: &[i64; N_RC]) -> Option<usize> {
    (0..N_RC).find(|&rc| amounts[rc] > 0 && !t.rc[rc].fits(r, amounts[rc], extra[rc]))
}

/// NoValidHost with the Placement-stage counts, the failing pass's counts, and the
/// hosts whose claim failed added to their resource class.
fn fail(plan: &Plan, first: &PassOutcome, pass: Option<&PassOutcome>, claim_fail: [u64; N_RC], index: usize) -> CoreError {
    let np = plan.placement.len();
    let mut rej: Vec<(String, u64)> = match pass {
        None => first.rejections(),
        Some(p) => {
            let mut v: Vec<(String, u64)> = first.checks[..np].iter().cloned().zip(first.counts[..np].iter().copied()).collect();
            v.extend(p.rejections());
            v
        }
    };
    for (rc, &n) in claim_fail.iter().enumerate() {
        if n > 0 {
            if let Some(e) = rej.iter_mut().find(|(name, _)| name == RC_NAMES[rc]) {
                e.1 += n;
            }
        }
    }
    no_valid_host(index, rej)
}

pub fn select(t: &Table, cfg: &Config, req: &Request, opts: &SelectOptions) -> CoreResult<Outcome> {
    if opts.claim {
        if let Some(u) = req.input.instance_uuids.iter().find(|u| t.consumers.contains_key(*u)) {
            return Err(CoreError::ClaimConflict(format!("consumer {u:?} already holds allocations")));
        }
    }
    let plan = Plan::new(t, cfg, req)?;
    let wp = WeighPlan::new(&plan);
    let mut rng = PyRandom::new(opts.seed);
    let num_alts = if opts.return_alternates { cfg.max_attempts - 1 } else { 0 };
    let first = plan.first_pass();
    if first.survivors.is_empty() {
        return Err(fail(&plan, &first, None, [0; N_RC], 0));
    }
    let selections = if req.input.instance_uuids.len() == 1 {
        select_one(&plan, &wp, &first, &mut rng, num_alts)?
    } else {
        Batch::new(&plan, &wp, &first)?.run(&first, &mut rng, num_alts)?
    };
    Ok(Outcome { selections, rejections: first.rejections() })
}

fn select_one(plan: &Plan, wp: &WeighPlan, first: &PassOutcome, rng: &mut PyRandom, num_alts: usize) -> CoreResult<Vec<Selection>> {
    let t = plan.t;
    let s = &first.survivors;
    let mut ranked = Ranked::new(Weights::new(plan, wp, s)?, plan.cfg, rng);
    let amounts = plan.req.amounts;
    let mut claim_fail = [0u64; N_RC];
    let mut i = 0;
    let (claimed, claimed_w) = loop {
        let Some((p, w)) = ranked.nth(i) else {
            return Err(fail(plan, first, None, claim_fail, 0));
        };
        let r = s[p as usize] as usize;
        match claim_misfit(t, r, &amounts, &[0; N_RC]) {
            None => break (p, w),
            Some(rc) => claim_fail[rc] += 1,
        }
        i += 1;
    };
    let row = s[claimed as usize] as usize;
    let cell = t.cell[row];
    let mut alternates = Vec::new();
    let mut j = 0;
    while alternates.len() < num_alts {
        let Some((p, w)) = ranked.nth(j) else { break };
        j += 1;
        let r = s[p as usize] as usize;
        if p != claimed && t.cell[r] == cell {
            alternates.push(Pick { row: r, weight: w });
        }
    }
    Ok(vec![Selection {
        instance_uuid: plan.req.input.instance_uuids[0].clone(),
        chosen: Pick { row, weight: claimed_w },
        alternates,
    }])
}

// ---------------------------------------------------------------------------------
// several instances: the incremental working set

const NONE: u32 = u32::MAX;

/// A multiplicative hasher for the u64 keys of the renormalisation groups (SipHash
/// is needlessly slow for them).
#[derive(Clone, Copy, Default)]
struct FxBuild;

struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

/// A tournament tree over positions: the best active one by (weight desc, key asc).
/// Nodes hold the weight and key themselves, so a comparison touches no other array.
struct Tree {
    size: usize,
    node: Vec<(f64, i64, u32)>,
}

const EMPTY: (f64, i64, u32) = (f64::NEG_INFINITY, i64::MAX, NONE);

impl Tree {
    fn build(n: usize, wt: &[f64], key: &[i64], active: &[bool]) -> Tree {
        let size = n.next_power_of_two().max(1);
        let mut node = vec![EMPTY; 2 * size];
        for p in 0..n {
            if active[p] {
                node[size + p] = (wt[p], key[p], p as u32);
            }
        }
        for i in (1..size).rev() {
            node[i] = Self::pick(node[2 * i], node[2 * i + 1]);
        }
        Tree { size, node }
    }

    #[inline]
    fn pick(a: (f64, i64, u32), b: (f64, i64, u32)) -> (f64, i64, u32) {
        if a.2 == NONE {
            return b;
        }
        if b.2 == NONE {
            return a;
        }
        if before(a.0, a.1, b.0, b.1) {
            a
        } else {
            b
        }
    }

    fn update(&mut self, p: usize, wt: &[f64], key: &[i64], active: bool) {
        let mut i = self.size + p;
        self.node[i] = if active { (wt[p], key[p], p as u32) } else { EMPTY };
        while i > 1 {
            i /= 2;
            self.node[i] = Self::pick(self.node[2 * i], self.node[2 * i + 1]);
        }
    }

    fn best(&self) -> Option<usize> {
        let b = self.node[1].2;
        (b != NONE).then_some(b as usize)
    }
}

/// Running min and max of one weigher over the live hosts, with how many hosts sit
/// on each, so that most updates need no rescan.
#[derive(Clone, Copy, Debug)]
struct Extremes {
    lo: f64,
    n_lo: usize,
    hi: f64,
    n_hi: usize,
}

struct Batch<'p, 'a> {
    plan: &'p Plan<'a>,
    wp: &'p WeighPlan,
    rows: Vec<u32>,
    alive: Vec<bool>,
    n_alive: usize,
    live: Vec<bool>,
    dead_rc: Vec<u8>,
    vals: Vec<Vals>,
    extra: Vec<[i64; N_RC]>,
    raw: Vec<Vec<f64>>,
    ext: Vec<Extremes>,
    norms: Vec<Norm>,
    weighed: bool,
    wt: Vec<f64>,
    key: Vec<i64>,
    front_key: i64,
    back_key: i64,
    tree_alive: Tree,
    /// Built on the first failed claim of a request (most requests have none).
    tree_live: Option<Tree>,
    in_group_hosts: Vec<bool>,
    group_hosts_nonempty: bool,
    affinity_pending: bool,
    later_checks: Vec<&'p Check>,
    alive_cache: std::cell::RefCell<Option<Vec<usize>>>,
}

impl<'p, 'a> Batch<'p, 'a> {
    fn new(plan: &'p Plan<'a>, wp: &'p WeighPlan, first: &PassOutcome) -> CoreResult<Self> {
        let s = &first.survivors;
        let m = s.len();
        wp.check_metrics(plan, s)?;
        let vals: Vec<Vals> = s.iter().map(|&r| Vals::base(plan, r as usize)).collect();
        let raw: Vec<Vec<f64>> = wp
            .weighers
            .iter()
            .map(|w| {
                let mut col = vec![0.0; m];
                wp.raw_base(plan, w, s, &mut col);
                col
            })
            .collect();
        let in_group_hosts: Vec<bool> = s.iter().map(|r| plan.group_host_rows.contains(r)).collect();
        let mut b = Batch {
            plan,
            wp,
            rows: s.clone(),
            alive: vec![true; m],
            n_alive: m,
            live: vec![true; m],
            dead_rc: vec![0; m],
            vals,
            extra: vec![[0; N_RC]; m],
            ext: Vec::new(),
            norms: Vec::new(),
            weighed: m > 1,
            raw,
            wt: vec![0.0; m],
            key: (0..m as i64).collect(),
            front_key: -2,
            back_key: m as i64,
            tree_alive: Tree { size: 1, node: vec![EMPTY; 2] },
            tree_live: None,
            in_group_hosts,
            group_hosts_nonempty: plan.req.group.as_ref().is_some_and(|g| !g.hosts.is_empty()),
            affinity_pending: false,
            later_checks: plan.pass_checks(1),
            alive_cache: std::cell::RefCell::new(None),
        };
        b.ext = (0..b.raw.len()).map(|k| b.scan(k)).collect();
        b.norms = b.current_norms();
        b.all_totals();
        b.rebuild_trees();
        Ok(b)
    }

    /// Min and max of weigher `k` over the live hosts, with how many hosts sit on
    /// each (two passes that vectorize, rather than one branchy one).
    fn scan(&self, k: usize) -> Extremes {
        let raw = &self.raw[k];
        let all_alive = self.n_alive == raw.len();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut n_lo, mut n_hi) = (0usize, 0usize);
        if all_alive {
            (lo, hi) = super::weigh::min_max(raw);
            for &x in raw {
                n_lo += (x == lo) as usize;
                n_hi += (x == hi) as usize;
            }
        } else {
            // few hosts left (an affinity group, a narrow pass): visit only those
            let alive = self.alive_positions();
            for &p in &alive {
                lo = lo.min(raw[p]);
                hi = hi.max(raw[p]);
            }
            for &p in &alive {
                n_lo += (raw[p] == lo) as usize;
                n_hi += (raw[p] == hi) as usize;
            }
        }
        Extremes { lo, n_lo, hi, n_hi }
    }

    /// The live positions, in order. Hosts only ever leave within a request, so the
    /// list is kept and filtered rather than rebuilt from every position.
    fn alive_positions(&self) -> Vec<usize> {
        let mut cache = self.alive_cache.borrow_mut();
        if cache.is_none() || cache.as_ref().is_some_and(|c| c.len() > 2 * self.n_alive + 16) {
            let fresh: Vec<usize> = match cache.as_ref() {
                Some(c) => c.iter().copied().filter(|&p| self.alive[p]).collect(),
                None => (0..self.rows.len()).filter(|&p| self.alive[p]).collect(),
            };
            *cache = Some(fresh);
        }
        cache.as_ref().expect("just filled").iter().copied().filter(|&p| self.alive[p]).collect()
    }

    fn current_norms(&self) -> Vec<Norm> {
        self.wp
            .weighers
            .iter()
            .zip(&self.ext)
            .map(|(w, e)| Norm { lo: w.minval.unwrap_or(e.lo), hi: e.hi })
            .collect()
    }

    fn total(&self, p: usize) -> f64 {
        if !self.weighed {
            return 0.0;
        }
        let t = self.plan.t;
        let r = self.rows[p] as usize;
        let mut weight = 0.0;
        for (k, (w, n)) in self.wp.weighers.iter().zip(&self.norms).enumerate() {
            if n.lo != n.hi {
                weight += w.mult.get(t, r) * n.apply(self.raw[k][p]);
            }
        }
        weight
    }

    /// `total` for every position, weigher by weigher so the loops vectorize; the
    /// per-host sum happens in the same order, so the results are bit-identical.
    fn all_totals(&mut self) {
        let t = self.plan.t;
        self.wt.fill(0.0);
        if !self.weighed {
            return;
        }
        for (k, (w, n)) in self.wp.weighers.iter().zip(&self.norms).enumerate() {
            if n.lo == n.hi {
                continue;
            }
            let (lo, range) = (n.lo, n.hi - n.lo);
            let raw = &self.raw[k];
            match &w.mult {
                super::weigh::Mult::Uniform(m) => {
                    for (acc, &x) in self.wt.iter_mut().zip(raw) {
                        *acc += m * ((x - lo) / range);
                    }
                }
                super::weigh::Mult::ByAggset(ms) => {
                    for ((acc, &x), &r) in self.wt.iter_mut().zip(raw).zip(&self.rows) {
                        *acc += ms[t.aggset[r as usize] as usize] * ((x - lo) / range);
                    }
                }
            }
        }
    }

    fn rebuild_trees(&mut self) {
        let m = self.rows.len();
        self.tree_alive = Tree::build(m, &self.wt, &self.key, &self.alive);
        self.tree_live = None;
    }

    fn refresh_tree(&mut self, p: usize) {
        self.tree_alive.update(p, &self.wt, &self.key, self.alive[p]);
        if let Some(t) = &mut self.tree_live {
            t.update(p, &self.wt, &self.key, self.live[p]);
        }
    }

    /// The best host that is still alive and whose claims have not failed.
    fn best_live(&mut self) -> Option<usize> {
        if self.tree_live.is_none() {
            self.tree_live = Some(Tree::build(self.rows.len(), &self.wt, &self.key, &self.live));
        }
        self.tree_live.as_ref().and_then(|t| t.best())
    }

    fn dyn_of(&self, p: usize, uuid: &str) -> Dyn {
        let r = self.rows[p];
        Dyn {
            num_io_ops: self.vals[p].num_io_ops,
            num_instances: self.vals[p].num_instances,
            members: self.vals[p].members,
            uuid_here: self.plan.uuids_preexisting && self.plan.t.instance_host.get(uuid) == Some(&r),
            in_group_hosts: self.in_group_hosts[p],
            group_hosts_nonempty: self.group_hosts_nonempty,
        }
    }

    /// Pass `index` > 0: re-run the per-instance filters where they can have changed,
    /// then bring weights up to date. Returns the pass's counts.
    fn refilter(&mut self, uuid: &str, consumed: Option<usize>, front: usize) -> PassOutcome {
        let checks = self.later_checks.clone();
        let mut counts = vec![0u64; checks.len()];
        let candidates: Vec<usize> = if self.plan.uuids_preexisting || self.affinity_pending {
            self.alive_positions()
        } else {
            consumed.filter(|&p| self.alive[p]).into_iter().collect()
        };
        self.affinity_pending = false;
        let mut removed = Vec::new();
        for p in candidates {
            let d = self.dyn_of(p, uuid);
            let r = self.rows[p] as usize;
            if let Some(k) = checks.iter().position(|c| !self.plan.passes(c, r, &d)) {
                counts[k] += 1;
                removed.push(p);
            }
        }
        let old_alive: Vec<usize> = removed.clone();
        for &p in &removed {
            self.alive[p] = false;
            self.live[p] = false;
            self.n_alive -= 1;
        }
        let mut changed: Vec<usize> = removed;
        if let Some(c) = consumed {
            if !changed.contains(&c) {
                changed.push(c);
            }
        }
        self.reweigh(&changed, &old_alive, consumed, front);
        let survivors = if self.n_alive == 0 { Vec::new() } else { vec![0] };
        PassOutcome { survivors, counts, checks: checks.iter().map(|c| c.name.clone()).collect(), placement: 0 }
    }

    /// Updates raws, extremes and weights after `changed` hosts changed value or
    /// (for `removed`) left the set.
    fn reweigh(&mut self, changed: &[usize], removed: &[usize], consumed: Option<usize>, front: usize) {
        let plan = self.plan;
        let wp = self.wp;
        let was_weighed = self.weighed;
        self.weighed = self.n_alive > 1;
        let mut rescan = vec![false; self.raw.len()];
        let mut old_wt_consumed = None;
        for &p in changed {
            let was_alive = self.alive[p] || removed.contains(&p);
            let r = self.rows[p] as usize;
            for (k, w) in wp.weighers.iter().enumerate() {
                let old = self.raw[k][p];
                let new = if w.dynamic { wp.raw(plan, w, r, &self.vals[p]) } else { old };
                let e = &mut self.ext[k];
                if was_alive {
                    if old == e.lo {
                        e.n_lo -= 1;
                    }
                    if old == e.hi {
                        e.n_hi -= 1;
                    }
                }
                self.raw[k][p] = new;
                if self.alive[p] {
                    if new < e.lo {
                        *e = Extremes { lo: new, n_lo: 1, ..*e };
                    } else if new == e.lo {
                        e.n_lo += 1;
                    }
                    if new > e.hi {
                        *e = Extremes { hi: new, n_hi: 1, ..*e };
                    } else if new == e.hi {
                        e.n_hi += 1;
                    }
                }
                if (e.n_lo == 0 || e.n_hi == 0) && self.n_alive > 0 {
                    rescan[k] = true;
                }
            }
            if Some(p) == consumed {
                old_wt_consumed = Some(self.wt[p]);
            }
        }
        for (k, need) in rescan.into_iter().enumerate() {
            if need {
                self.ext[k] = self.scan(k);
            }
        }
        let norms = self.current_norms();
        let same = was_weighed == self.weighed && norms.iter().zip(&self.norms).all(|(a, b)| a.same(b));
        self.norms = norms;
        if same {
            for &p in changed {
                if self.alive[p] {
                    let new = self.total(p);
                    if Some(p) == consumed && p != front {
                        // place it where the previous pass's order had it among new ties
                        let old = old_wt_consumed.unwrap_or(new);
                        if old > new {
                            // just after the chosen host (whose key is front_key + 4)
                            self.key[p] = self.front_key + 5;
                        } else if old < new {
                            self.key[p] = self.back_key;
                            self.back_key += 1;
                        }
                    }
                    self.wt[p] = new;
                }
                self.refresh_tree(p);
            }
        } else {
            self.renormalise(front);
        }
    }

    /// Every weight changes: recompute them, and re-key so that hosts now tied keep
    /// the order of the previous pass (the chosen host first, then old weight, then
    /// key). The chosen host already holds the smallest key, so only a group of new
    /// ties whose members had different old weights needs re-keying; that is rare,
    /// and the common case stays linear.
    fn renormalise(&mut self, front: usize) {
        let old = self.wt.clone();
        let alive: Vec<usize> = self.alive_positions();
        self.all_totals();
        let bits = |x: f64| if x == 0.0 { 0u64 } else { x.to_bits() };
        // new weight -> (an old weight seen, whether old weights differ)
        let mut groups: HashMap<u64, (u64, bool), FxBuild> = HashMap::with_capacity_and_hasher(64, FxBuild);
        for &p in &alive {
            let o = if p == front { u64::MAX } else { bits(old[p]) };
            let e = groups.entry(bits(self.wt[p])).or_insert((o, false));
            if e.0 != o && p != front {
                if e.0 == u64::MAX {
                    e.0 = o;
                } else {
                    e.1 = true;
                }
            }
        }
        if groups.values().any(|g| g.1) {
            let mut members: HashMap<u64, Vec<usize>, FxBuild> = HashMap::with_hasher(FxBuild);
            for &p in &alive {
                let b = bits(self.wt[p]);
                if groups[&b].1 {
                    members.entry(b).or_default().push(p);
                }
            }
            for (_, mut g) in members {
                let mut keys: Vec<i64> = g.iter().map(|&p| self.key[p]).collect();
                keys.sort_unstable();
                let key = &self.key;
                g.sort_unstable_by(|&a, &b| {
                    (b == front)
                        .cmp(&(a == front))
                        .then_with(|| old[b].partial_cmp(&old[a]).unwrap())
                        .then_with(|| key[a].cmp(&key[b]))
                });
                for (p, k) in g.into_iter().zip(keys) {
                    self.key[p] = k;
                }
            }
        }
        self.rebuild_trees();
    }

    /// `_get_sorted_hosts`' draws: shuffle of the best group, then the choice.
    fn choose(&mut self, rng: &mut PyRandom) -> usize {
        let cfg = self.plan.cfg;
        let chosen = if cfg.host_subset_size == 1 && !cfg.shuffle_best_same_weighed_hosts {
            rng.randbelow(1);
            self.tree_alive.best().expect("some host is alive")
        } else {
            let mut alive: Vec<usize> = (0..self.rows.len()).filter(|&p| self.alive[p]).collect();
            let (wt, key) = (&self.wt, &self.key);
            alive.sort_unstable_by(|&a, &b| {
                if before(wt[a], key[a], wt[b], key[b]) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            });
            if cfg.shuffle_best_same_weighed_hosts {
                let top = self.wt[alive[0]];
                let n_best = alive.iter().take_while(|&&p| self.wt[p] == top).count();
                let mut keys: Vec<i64> = alive[..n_best].iter().map(|&p| self.key[p]).collect();
                keys.sort_unstable();
                rng.shuffle(&mut alive[..n_best]);
                for (i, &p) in alive[..n_best].iter().enumerate() {
                    self.key[p] = keys[i];
                    self.refresh_tree(p);
                }
            }
            let subset = cfg.host_subset_size.min(alive.len());
            alive[rng.randbelow(subset)]
        };
        self.key[chosen] = self.front_key;
        self.front_key -= 4;
        self.refresh_tree(chosen);
        chosen
    }

    fn try_claim(&mut self, p: usize) -> bool {
        let r = self.rows[p] as usize;
        match claim_misfit(self.plan.t, r, &self.plan.req.amounts, &self.extra[p]) {
            None => true,
            Some(rc) => {
                self.dead_rc[p] = rc as u8 + 1;
                self.live[p] = false;
                if let Some(t) = &mut self.tree_live {
                    t.update(p, &self.wt, &self.key, false);
                }
                false
            }
        }
    }

    fn consume(&mut self, p: usize, uuid: &str) {
        let req = self.plan.req;
        let input = &req.input;
        let v = &mut self.vals[p];
        v.free_ram_mb -= input.memory_mb;
        v.free_disk_mb -= (input.root_gb + input.ephemeral_gb) * 1024;
        v.vcpus_used += input.vcpus;
        v.num_instances += 1;
        v.num_io_ops += 1;
        for rc in 0..N_RC {
            self.extra[p][rc] += req.amounts[rc];
        }
        if let Some(g) = &req.group {
            if !self.group_hosts_nonempty {
                self.affinity_pending = true;
            }
            self.group_hosts_nonempty = true;
            self.in_group_hosts[p] = true;
            let r = self.rows[p];
            let already_here = self.plan.t.instance_host.get(uuid) == Some(&r);
            if !already_here && g.member_set.contains(uuid) {
                self.vals[p].members += 1;
            }
            if !already_here {
                self.vals[p].image_stubs += 1;
            }
        }
    }

    fn run(mut self, first: &PassOutcome, rng: &mut PyRandom, num_alts: usize) -> CoreResult<Vec<Selection>> {
        let plan = self.plan;
        let t = plan.t;
        let uuids = &plan.req.input.instance_uuids;
        let mut picks: Vec<Pick> = Vec::with_capacity(uuids.len());
        let mut consumed: Option<usize> = None;
        let mut front = 0;
        for (i, uuid) in uuids.iter().enumerate() {
            let pass = if i > 0 {
                let pass = self.refilter(uuid, consumed, front);
                if self.n_alive == 0 {
                    return Err(fail(plan, first, Some(&pass), [0; N_RC], i));
                }
                Some(pass)
            } else {
                None
            };
            let chosen = self.choose(rng);
            front = chosen;
            let mut p = chosen;
            if !(self.live[p] && self.try_claim(p)) {
                loop {
                    match self.best_live() {
                        Some(q) => {
                            if self.try_claim(q) {
                                p = q;
                                break;
                            }
                        }
                        None => {
                            let mut claim_fail = [0u64; N_RC];
                            for q in 0..self.rows.len() {
                                if self.alive[q] && self.dead_rc[q] > 0 {
                                    claim_fail[self.dead_rc[q] as usize - 1] += 1;
                                }
                            }
                            return Err(fail(plan, first, pass.as_ref(), claim_fail, i));
                        }
                    }
                }
            }
            picks.push(Pick { row: self.rows[p] as usize, weight: self.wt[p] });
            self.consume(p, uuid);
            consumed = Some(p);
        }
        // _get_alternate_hosts: one more filtering and weighing at the last index
        let selected: HashSet<usize> = picks.iter().map(|p| p.row).collect();
        // The list the last pass returns, `[chosen] + rest by weight`, is walked
        // only as far as the alternates need: hosts are taken from the tree in order
        // until every cell of a selected host has its alternates (or none is left).
        let mut alternates_list: Vec<usize> = Vec::new();
        if num_alts > 0 {
            let last = uuids.last().expect("at least one");
            self.refilter(last, consumed, front);
            if self.n_alive > 0 {
                let chosen = self.choose(rng);
                let mut need: std::collections::HashMap<u32, usize> =
                    selected.iter().map(|&r| (t.cell[r], num_alts)).collect();
                let mut taken = Vec::new();
                let mut next = Some(chosen);
                while let Some(q) = next {
                    alternates_list.push(q);
                    taken.push(q);
                    self.tree_alive.update(q, &self.wt, &self.key, false);
                    let r = self.rows[q] as usize;
                    if !selected.contains(&r) {
                        if let Some(n) = need.get_mut(&t.cell[r]) {
                            *n = n.saturating_sub(1);
                        }
                    }
                    if need.values().all(|&n| n == 0) {
                        break;
                    }
                    next = self.tree_alive.best();
                }
                for q in taken {
                    self.tree_alive.update(q, &self.wt, &self.key, true);
                }
            }
        }
        // the alternates depend only on the cell: work them out once per cell
        let mut by_cell: std::collections::HashMap<u32, Vec<Pick>> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(picks.len());
        for (i, pick) in picks.into_iter().enumerate() {
            let cell = t.cell[pick.row];
            let alternates = by_cell
                .entry(cell)
                .or_insert_with(|| {
                    alternates_list
                        .iter()
                        .map(|&q| (q, self.rows[q] as usize))
                        .filter(|&(_, r)| t.cell[r] == cell && !selected.contains(&r))
                        .take(num_alts)
                        .map(|(q, r)| Pick { row: r, weight: self.wt[q] })
                        .collect()
                })
                .clone();
            out.push(Selection { instance_uuid: uuids[i].clone(), chosen: pick, alternates });
        }
        Ok(out)
    }
}

/// Writes a successful selection into the table: the allocations (consumer =
/// instance uuid), the compute-node consumption, and each instance on its host.
pub fn commit(t: &mut Table, req: &Request, selections: &[Selection]) {
    let input = &req.input;
    let image = t.intern_image_props(&input.image_properties);
    for s in selections {
        let r = s.chosen.row;
        if req.amounts.iter().any(|&a| a > 0) {
            t.commit_allocation(&s.instance_uuid, r, req.amounts);
        }
        let upd = |c: &mut super::col::Col<i64>, d: i64| {
            let v = c[r] + d;
            c.set(r, v);
        };
        upd(&mut t.free_ram_mb, -input.memory_mb);
        upd(&mut t.free_disk_mb, -(input.root_gb + input.ephemeral_gb) * 1024);
        upd(&mut t.vcpus_used, input.vcpus);
        upd(&mut t.num_instances, 1);
        upd(&mut t.num_io_ops, 1);
        t.refresh_weigh_cols(r);
        // a move: the instance's record follows it to the new host
        if let Some(old) = t.instance_host.insert(s.instance_uuid.clone(), r as u32) {
            t.host_instances[old as usize].retain(|u| u != &s.instance_uuid);
        }
        t.host_instances[r].push(s.instance_uuid.clone());
        t.instance_image.insert(s.instance_uuid.clone(), image);
    }
    t.refresh_zones();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::FilterKind;
    use crate::core::request::RequestInput;
    use crate::core::table::{HostSpec, Inventory, VCPU};

    fn request(uuids: &[&str], vcpus: i64, mem: i64) -> Request {
        Request::compile(RequestInput {
            flavor_name: "f".into(),
            vcpus,
            memory_mb: mem,
            root_gb: 1,
            instance_uuids: uuids.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    fn opts() -> SelectOptions {
        SelectOptions { claim: true, seed: 0, return_alternates: true }
    }

    /// A small deterministic generator for table contents.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> i64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n) as i64
        }
    }

    fn random_table(n: usize, seed: u64) -> Table {
        let mut g = Lcg(seed);
        let hosts: Vec<HostSpec> = (0..n)
            .map(|i| {
                let k = g.next(3);
                let mut h = HostSpec::simple(&format!("h{i}"), [16, 32, 64][k as usize], [32768, 65536, 131072][k as usize], 500);
                // few distinct usages: ties are common
                h.vcpus_used = g.next(4);
                h.free_ram_mb = Some([32768, 65536, 131072][k as usize] - 1024 * g.next(3));
                h.num_io_ops = g.next(3);
                h.inventories[VCPU] = Inventory { allocation_ratio: 2.0, ..h.inventories[VCPU] };
                h
            })
            .collect();
        let mut t = Table::new();
        t.add_hosts(&hosts).unwrap();
        t
    }

    #[test]
    fn spreads_by_default_and_stacks_with_a_negative_multiplier() {
        let mut t = Table::new();
        for (name, mem) in [("small", 4096), ("big", 16384), ("mid", 8192)] {
            t.add_host(&HostSpec::simple(name, 8, mem, 100)).unwrap();
        }
        let mut cfg = Config::default();
        let out = select(&t, &cfg, &request(&["a"], 1, 1024), &opts()).unwrap();
        assert_eq!(t.names[out.selections[0].chosen.row], "big");
        cfg.multipliers[crate::core::config::WeigherKind::Ram.index()] = -1.0;
        let out = select(&t, &cfg, &request(&["a"], 1, 1024), &opts()).unwrap();
        assert_eq!(t.names[out.selections[0].chosen.row], "small");
        // alternates follow in weight order
        let alts: Vec<&str> = out.selections[0].alternates.iter().map(|p| t.names[p.row].as_str()).collect();
        assert_eq!(alts, vec!["mid", "big"]);
    }

    #[test]
    fn anti_affinity_spreads_a_multi_create_and_counts_rejections() {
        let mut t = Table::new();
        for i in 0..3 {
            t.add_host(&HostSpec::simple(&format!("h{i}"), 8, 8192, 100)).unwrap();
        }
        let cfg = Config::default();
        let mut input = request(&["a", "b", "c"], 1, 512).input;
        input.group = Some(("g".into(), "anti-affinity".into(), input.instance_uuids.clone(), vec![], None));
        let req = Request::compile(input.clone()).unwrap();
        let out = select(&t, &cfg, &req, &opts()).unwrap();
        let mut hosts: Vec<usize> = out.selections.iter().map(|s| s.chosen.row).collect();
        hosts.sort();
        assert_eq!(hosts, vec![0, 1, 2]);
        input.instance_uuids.push("d".into());
        input.group = Some(("g".into(), "anti-affinity".into(), input.instance_uuids.clone(), vec![], None));
        let err = select(&t, &cfg, &Request::compile(input).unwrap(), &opts()).unwrap_err();
        match err {
            CoreError::NoValidHost { rejections, instance_index, .. } => {
                assert_eq!(instance_index, 3);
                assert!(rejections.contains(&("ServerGroupAntiAffinityFilter".to_string(), 1)), "{rejections:?}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn zone_pruned_ranking_equals_weighing_every_host() {
        let t = random_table(30_000, 7);
        for (mult, k) in [(1.0, 1), (-1.0, 5), (2.5, 40)] {
            let mut cfg = Config::default();
            cfg.filters = vec![FilterKind::Compute, FilterKind::IoOps];
            cfg.multipliers[crate::core::config::WeigherKind::Ram.index()] = mult;
            let req = request(&["x"], 2, 2048);
            let plan = Plan::new(&t, &cfg, &req).unwrap();
            let wp = WeighPlan::new(&plan);
            let first = plan.first_pass();
            let mut lazy = Weights::new(&plan, &wp, &first.survivors).unwrap();
            assert!(matches!(lazy, Weights::Lazy(_)));
            let norms = wp.norms(&plan, &first.survivors);
            let mut full = Weights::Full(wp.totals(&plan, &first.survivors, &norms));
            assert_eq!(lazy.prefix(k), full.prefix(k), "multiplier {mult}, k {k}");
            assert_eq!(lazy.ties_with_top(), full.ties_with_top());
        }
    }

    #[test]
    fn zone_summaries_do_not_change_a_sweep() {
        let mut t = random_table(20_000, 3);
        let mut cfg = Config::default();
        cfg.filters = vec![FilterKind::Compute, FilterKind::IoOps, FilterKind::NumInstances];
        cfg.max_io_ops_per_host = 2;
        let req = request(&["x"], 4, 4096);
        let with_zones = filter(&t, &cfg, &req, 0).unwrap();
        for z in 0..t.zones.dirty.len() {
            t.touch(z * crate::core::table::ZONE);
        }
        let row_by_row = filter(&t, &cfg, &req, 0).unwrap();
        assert_eq!(with_zones.survivors, row_by_row.survivors);
        assert_eq!(with_zones.counts, row_by_row.counts);
    }

    #[test]
    fn a_failed_request_changes_nothing_and_a_dry_run_claims_nothing() {
        let mut t = Table::new();
        t.add_host(&HostSpec::simple("only", 2, 4096, 100)).unwrap();
        let cfg = Config::default();
        let req = request(&["a", "b", "c"], 1, 1024);
        let before = (t.usage(0), t.generation[0]);
        assert!(matches!(select(&t, &cfg, &req, &opts()), Err(CoreError::NoValidHost { instance_index: 2, .. })));
        let dry = SelectOptions { claim: false, ..opts() };
        let ok = select(&t, &cfg, &request(&["a", "b"], 1, 1024), &dry).unwrap();
        assert_eq!(ok.selections.len(), 2);
        assert_eq!((t.usage(0), t.generation[0]), before);
        commit(&mut t, &request(&["a", "b"], 1, 1024), &ok.selections);
        assert_eq!(t.usage(0), [2, 2048, 2]);
        assert_eq!(t.num_instances[0], 2);
    }
}
