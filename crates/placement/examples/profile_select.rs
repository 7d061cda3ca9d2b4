//! Times the core's pieces without Python in the way, for profiling:
//! `cargo run --release --no-default-features --example profile_select -- 10000`
use std::time::Instant;

use novalite_placement::core::config::{Config, FilterKind};
use novalite_placement::core::request::{Request, RequestInput};
use novalite_placement::core::select::{self, SelectOptions};
use novalite_placement::core::table::{HostSpec, Inventory, Table, VCPU};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let iters: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let mut t = Table::new();
    for i in 0..n {
        let mut h = HostSpec::simple(&format!("h{i}"), 64, 262_144, 2_000);
        h.inventories[VCPU] = Inventory { allocation_ratio: 4.0, ..h.inventories[VCPU] };
        t.add_host(&h).unwrap();
    }
    let mut cfg = Config::default();
    cfg.filters.extend([
        FilterKind::AggregateInstanceExtraSpecs,
        FilterKind::AggregateMultiTenancyIsolation,
        FilterKind::AggregateTypeAffinity,
        FilterKind::AggregateImagePropertiesIsolation,
        FilterKind::IoOps,
        FilterKind::AggregateIoOps,
        FilterKind::NumInstances,
        FilterKind::AggregateNumInstances,
    ]);
    let req = Request::compile(RequestInput {
        flavor_name: "m1".into(),
        vcpus: 2,
        memory_mb: 4096,
        root_gb: 40,
        instance_uuids: vec!["a".into()],
        ..Default::default()
    })
    .unwrap();
    let opts = SelectOptions { claim: false, seed: 0, return_alternates: true };
    let time = |name: &str, f: &mut dyn FnMut()| {
        for _ in 0..iters / 10 {
            f();
        }
        let t0 = Instant::now();
        for _ in 0..iters {
            f();
        }
        println!("{name}: {:.1} us", t0.elapsed().as_secs_f64() / iters as f64 * 1e6);
    };
    time("filter", &mut || {
        select::filter(&t, &cfg, &req, 0).unwrap();
    });
    time("weigh", &mut || {
        select::weigh(&t, &cfg, &req, 0).unwrap();
    });
    time("select", &mut || {
        select::select(&t, &cfg, &req, &opts).unwrap();
    });
}
