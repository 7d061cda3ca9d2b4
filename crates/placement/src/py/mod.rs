//! The binding layer: Python objects in, core calls with the GIL released, numpy and
//! plain Python values out. No scheduling logic lives here.

use std::collections::BTreeMap;
use std::sync::Arc;

use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use parking_lot::RwLock;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use serde_json::Value;

use crate::core::config::Config;
use crate::core::error::CoreError;
use crate::core::request::{Request, RequestInput};
use crate::core::select::{self, SelectOptions};
use crate::core::table::{rc_index, AggregateDef, HostField, HostSpec, Inventory, Table, MAX_AMOUNT, N_RC, RC_NAMES};

mod errors {
    pyo3::import_exception!(novalite.placement.errors, PlacementError);
    pyo3::import_exception!(novalite.placement.errors, InvalidInput);
    pyo3::import_exception!(novalite.placement.errors, UnknownHost);
    pyo3::import_exception!(novalite.placement.errors, UnknownConsumer);
    pyo3::import_exception!(novalite.placement.errors, UnknownAggregate);
    pyo3::import_exception!(novalite.placement.errors, NoValidHost);
    pyo3::import_exception!(novalite.placement.errors, ClaimConflict);
    pyo3::import_exception!(novalite.placement.errors, CapacityExceeded);
    pyo3::import_exception!(novalite.placement.errors, GenerationConflict);
}

fn to_py(e: CoreError) -> PyErr {
    match e {
        CoreError::InvalidInput(m) => errors::InvalidInput::new_err(m),
        CoreError::UnknownHost(m) => errors::UnknownHost::new_err(m),
        CoreError::UnknownConsumer(m) => errors::UnknownConsumer::new_err(m),
        CoreError::UnknownAggregate(m) => errors::UnknownAggregate::new_err(m),
        CoreError::NoValidHost { message, rejections, instance_index } => {
            errors::NoValidHost::new_err((message, rejections, instance_index))
        }
        CoreError::ClaimConflict(m) => errors::ClaimConflict::new_err(m),
        CoreError::CapacityExceeded(m) => errors::CapacityExceeded::new_err(m),
        CoreError::GenerationConflict(m) => errors::GenerationConflict::new_err(m),
        CoreError::Placement(m) => errors::PlacementError::new_err(m),
    }
}

fn bad(msg: impl Into<String>) -> PyErr {
    errors::InvalidInput::new_err(msg.into())
}

/// Runs `f` with the GIL released and maps the core's error.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, CoreError> + Send) -> PyResult<T> {
    py.detach(f).map_err(to_py)
}

// ---- reading Python values ---------------------------------------------------------

fn field<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    obj.getattr(name).map_err(|_| PyTypeError::new_err(format!("expected an object with a {name:?} attribute")))
}

fn int(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(bad(format!("{what} must be an integer, got a bool")));
    }
    obj.extract::<i64>().map_err(|_| bad(format!("{what} must be an integer, got {}", type_name(obj))))
}

fn float(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(bad(format!("{what} must be a number, got a bool")));
    }
    obj.extract::<f64>().map_err(|_| bad(format!("{what} must be a number, got {}", type_name(obj))))
}

fn string(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    obj.extract::<String>().map_err(|_| bad(format!("{what} must be a string, got {}", type_name(obj))))
}

fn boolean(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<bool> {
    obj.extract::<bool>().map_err(|_| bad(format!("{what} must be a bool, got {}", type_name(obj))))
}

fn opt_string(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<String>> {
    if obj.is_none() {
        Ok(None)
    } else {
        string(obj, what).map(Some)
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

fn strings(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<pyo3::types::PyString>() {
        return Err(bad(format!("{what} must be a list of strings, not a string")));
    }
    let mut out = Vec::new();
    for item in obj.try_iter().map_err(|_| bad(format!("{what} must be a list of strings")))? {
        out.push(string(&item?, &format!("{what}[]"))?);
    }
    Ok(out)
}

/// A mapping's items, in its own order.
fn items<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let it = obj.call_method0("items").map_err(|_| bad(format!("{what} must be a mapping")))?;
    let mut out = Vec::new();
    for pair in it.try_iter()? {
        let pair = pair?;
        let t = pair.cast::<PyTuple>().map_err(|_| bad(format!("{what} must be a mapping")))?;
        out.push((t.get_item(0)?, t.get_item(1)?));
    }
    Ok(out)
}

fn str_map(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in items(obj, what)? {
        let k = string(&k, &format!("{what} key"))?;
        let v = string(&v, &format!("{what}[{k:?}]"))?;
        out.insert(k, v);
    }
    Ok(out)
}

fn float_pairs(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for (k, v) in items(obj, what)? {
        let k = string(&k, &format!("{what} key"))?;
        let v = float(&v, &format!("{what}[{k:?}]"))?;
        out.push((k, v));
    }
    Ok(out)
}

fn json_value(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    let py = obj.py();
    let text: String = py
        .import("json")?
        .call_method1("dumps", (obj,))
        .and_then(|s| s.extract())
        .map_err(|_| bad(format!("{what} must be JSON-serialisable")))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("{what}: {e}")))
}

fn inventory(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Inventory> {
    Ok(Inventory {
        total: int(&field(obj, "total")?, &format!("{what}.total"))?,
        reserved: int(&field(obj, "reserved")?, &format!("{what}.reserved"))?,
        allocation_ratio: float(&field(obj, "allocation_ratio")?, &format!("{what}.allocation_ratio"))?,
        min_unit: int(&field(obj, "min_unit")?, &format!("{what}.min_unit"))?,
        max_unit: int(&field(obj, "max_unit")?, &format!("{what}.max_unit"))?,
        step_size: int(&field(obj, "step_size")?, &format!("{what}.step_size"))?,
    })
}

fn triples(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<[String; 3]>> {
    let mut out = Vec::new();
    for item in obj.try_iter().map_err(|_| bad(format!("{what} must be a list of triples")))? {
        let v = strings(&item?, what)?;
        let [a, b, c]: [String; 3] = v.try_into().map_err(|_| bad(format!("{what}: each entry must be (arch, hv_type, vm_mode)")))?;
        out.push([a, b, c]);
    }
    Ok(out)
}

fn metrics(obj: &Bound<'_, PyAny>) -> PyResult<BTreeMap<String, f64>> {
    Ok(float_pairs(obj, "metrics")?.into_iter().collect())
}

fn host_spec(h: &Bound<'_, PyAny>) -> PyResult<HostSpec> {
    let name = string(&field(h, "name")?, "host.name")?;
    let opt_int = |attr: &str| -> PyResult<Option<i64>> {
        let v = field(h, attr)?;
        if v.is_none() {
            Ok(None)
        } else {
            int(&v, &format!("host.{attr}")).map(Some)
        }
    };
    let mut instances = Vec::new();
    for (k, v) in items(&field(h, "instances")?, "host.instances")? {
        instances.push((string(&k, "host.instances key")?, str_map(&v, "host.instances[] image properties")?));
    }
    Ok(HostSpec {
        uuid: string(&field(h, "uuid")?, "host.uuid")?,
        inventories: [
            inventory(&field(h, "vcpu")?, "host.vcpu")?,
            inventory(&field(h, "memory_mb")?, "host.memory_mb")?,
            inventory(&field(h, "disk_gb")?, "host.disk_gb")?,
        ],
        vcpus_used: int(&field(h, "vcpus_used")?, "host.vcpus_used")?,
        free_ram_mb: opt_int("free_ram_mb")?,
        free_disk_mb: opt_int("free_disk_mb")?,
        num_instances: int(&field(h, "num_instances")?, "host.num_instances")?,
        num_io_ops: int(&field(h, "num_io_ops")?, "host.num_io_ops")?,
        failed_builds: int(&field(h, "failed_builds")?, "host.failed_builds")?,
        enabled: boolean(&field(h, "enabled")?, "host.enabled")?,
        up: boolean(&field(h, "up")?, "host.up")?,
        hypervisor_type: string(&field(h, "hypervisor_type")?, "host.hypervisor_type")?,
        hypervisor_version: int(&field(h, "hypervisor_version")?, "host.hypervisor_version")?,
        supported_instances: triples(&field(h, "supported_instances")?, "host.supported_instances")?,
        cpu_info: json_value(&field(h, "cpu_info")?, "host.cpu_info")?,
        stats: str_map(&field(h, "stats")?, "host.stats")?,
        metrics: metrics(&field(h, "metrics")?)?,
        aggregates: strings(&field(h, "aggregates")?, "host.aggregates")?,
        traits: strings(&field(h, "traits")?, "host.traits")?,
        instances,
        cell: string(&field(h, "cell")?, "host.cell")?,
        free_pci_devs: int(&field(h, "free_pci_devs")?, "host.free_pci_devs")?,
        host_ip: string(&field(h, "host_ip")?, "host.host_ip")?,
        name,
    })
}

fn host_field(name: &str, v: &Bound<'_, PyAny>) -> PyResult<HostField> {
    let w = name;
    Ok(match name {
        "vcpus_used" => HostField::VcpusUsed(int(v, w)?),
        "free_ram_mb" => HostField::FreeRamMb(int(v, w)?),
        "free_disk_mb" => HostField::FreeDiskMb(int(v, w)?),
        "num_instances" => HostField::NumInstances(int(v, w)?),
        "num_io_ops" => HostField::NumIoOps(int(v, w)?),
        "failed_builds" => HostField::FailedBuilds(int(v, w)?),
        "enabled" => HostField::Enabled(boolean(v, w)?),
        "up" => HostField::Up(boolean(v, w)?),
        "hypervisor_type" => HostField::HypervisorType(string(v, w)?),
        "hypervisor_version" => HostField::HypervisorVersion(int(v, w)?),
        "supported_instances" => HostField::SupportedInstances(triples(v, w)?),
        "cpu_info" => HostField::CpuInfo(json_value(v, w)?),
        "stats" => HostField::Stats(str_map(v, w)?),
        "metrics" => HostField::Metrics(metrics(v)?),
        "traits" => HostField::Traits(strings(v, w)?),
        "cell" => HostField::Cell(string(v, w)?),
        "free_pci_devs" => HostField::FreePciDevs(int(v, w)?),
        "host_ip" => HostField::HostIp(string(v, w)?),
        _ => return Err(bad(format!("update_host: unknown field {name:?}"))),
    })
}

fn allocation(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Vec<(String, i64)>)>> {
    let mut out = Vec::new();
    for (host, res) in items(obj, "allocations")? {
        let host = string(&host, "allocations key (host name)")?;
        let mut amounts = Vec::new();
        for (rc, amount) in items(&res, &format!("allocations[{host:?}]"))? {
            let rc = string(&rc, "resource class")?;
            amounts.push((rc.clone(), int(&amount, &format!("allocations[{host:?}][{rc:?}]"))?));
        }
        out.push((host, amounts));
    }
    Ok(out)
}

fn generations(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<(String, i64)>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(None) };
    let mut out = Vec::new();
    for (k, v) in items(obj, "generations")? {
        out.push((string(&k, "generations key")?, int(&v, "generation")?));
    }
    Ok(Some(out))
}

fn gens_dict<'py>(py: Python<'py>, gens: Vec<(String, i64)>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in gens {
        d.set_item(k, v)?;
    }
    Ok(d)
}

fn rc_dict<'py>(py: Python<'py>, v: [i64; N_RC]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (i, name) in RC_NAMES.iter().enumerate() {
        d.set_item(*name, v[i])?;
    }
    Ok(d)
}

// ---- zero-copy columns -------------------------------------------------------------

enum Shared {
    I64(Arc<Vec<i64>>),
    F64(Arc<Vec<f64>>),
    Bool(Arc<Vec<bool>>),
}

/// Owns a column snapshot for as long as a numpy array points into it.
#[pyclass(frozen)]
struct ColumnOwner {
    data: Shared,
}

fn view<'py, T: numpy::Element>(data: &[T], owner: Bound<'py, ColumnOwner>) -> PyResult<Bound<'py, PyAny>> {
    let v = ArrayView1::from(data);
    // SAFETY: `owner` keeps the Arc'd vector alive and nothing writes to it while it
    // is shared (writers copy first), and the array is made read-only below.
    let arr = unsafe { PyArray1::<T>::borrow_from_array(&v, owner.into_any()) };
    arr.call_method1("setflags", (false,))?;
    Ok(arr.into_any())
}

// ---- HostTable ---------------------------------------------------------------------

#[pyclass(frozen, module = "novalite._placement")]
pub struct HostTable {
    inner: Arc<RwLock<Table>>,
}

#[pymethods]
impl HostTable {
    #[new]
    fn new() -> Self {
        HostTable { inner: Arc::new(RwLock::new(Table::new())) }
    }

    fn __len__(&self) -> usize {
        self.inner.read().len()
    }

    fn add_host(&self, py: Python<'_>, host: &Bound<'_, PyAny>) -> PyResult<usize> {
        let spec = host_spec(host)?;
        let inner = self.inner.clone();
        detached(py, move || inner.write().add_host(&spec))
    }

    /// Appends `len(names)` hosts from columns (numpy arrays, one entry per host);
    /// missing columns take the `Host` defaults. All or nothing.
    #[pyo3(signature = (names, uuids, columns, strings))]
    fn add_hosts(
        &self,
        py: Python<'_>,
        names: Vec<String>,
        uuids: Vec<String>,
        columns: &Bound<'_, PyDict>,
        strings: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let n = names.len();
        if uuids.len() != n {
            return Err(bad(format!("uuids has {} entries, names has {n}", uuids.len())));
        }
        let mut ints: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut floats: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut bools: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        for (k, v) in columns.iter() {
            let k: String = k.extract()?;
            let kind = bulk_kind(&k).ok_or_else(|| bad(format!("unknown column {k:?}")))?;
            let len = |l: usize| -> PyResult<()> {
                if l != n {
                    Err(bad(format!("column {k:?} has {l} entries, expected {n}")))
                } else {
                    Ok(())
                }
            };
            match kind {
                'i' => {
                    let a: PyReadonlyArray1<i64> =
                        v.extract().map_err(|_| bad(format!("column {k:?} must be a 1-d int64 array, got {}", dtype_of(&v))))?;
                    let s = a.as_slice().map_err(|_| bad(format!("column {k:?} must be contiguous")))?;
                    len(s.len())?;
                    ints.insert(k, s.to_vec());
                }
                'f' => {
                    let a: PyReadonlyArray1<f64> =
                        v.extract().map_err(|_| bad(format!("column {k:?} must be a 1-d float64 array, got {}", dtype_of(&v))))?;
                    let s = a.as_slice().map_err(|_| bad(format!("column {k:?} must be contiguous")))?;
                    len(s.len())?;
                    floats.insert(k, s.to_vec());
                }
                _ => {
                    let a: PyReadonlyArray1<bool> =
                        v.extract().map_err(|_| bad(format!("column {k:?} must be a 1-d bool array, got {}", dtype_of(&v))))?;
                    let s = a.as_slice().map_err(|_| bad(format!("column {k:?} must be contiguous")))?;
                    len(s.len())?;
                    bools.insert(k, s.to_vec());
                }
            }
        }
        let mut strs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in strings.iter() {
            let k: String = k.extract()?;
            if k != "hypervisor_type" && k != "cell" {
                return Err(bad(format!("unknown string column {k:?} (hypervisor_type, cell)")));
            }
            let vals = self::strings(&v, &k)?;
            if vals.len() != n {
                return Err(bad(format!("column {k:?} has {} entries, expected {n}", vals.len())));
            }
            strs.insert(k, vals);
        }
        let inner = self.inner.clone();
        detached(py, move || {
            let mut specs = Vec::with_capacity(n);
            for (i, (name, uuid)) in names.into_iter().zip(uuids).enumerate() {
                let mut h = HostSpec::simple(&name, 0, 0, 0);
                h.uuid = uuid;
                for (rc, prefix) in ["vcpu", "memory_mb", "disk_gb"].iter().enumerate() {
                    let inv = &mut h.inventories[rc];
                    let g = |suffix: &str| ints.get(&format!("{prefix}_{suffix}")).map(|c| c[i]);
                    inv.total = g("total").unwrap_or(0);
                    inv.reserved = g("reserved").unwrap_or(0);
                    inv.min_unit = g("min_unit").unwrap_or(1);
                    inv.max_unit = g("max_unit").unwrap_or(MAX_AMOUNT);
                    inv.step_size = g("step_size").unwrap_or(1);
                    inv.allocation_ratio = floats.get(&format!("{prefix}_allocation_ratio")).map(|c| c[i]).unwrap_or(1.0);
                }
                let gi = |k: &str, d: i64| ints.get(k).map(|c| c[i]).unwrap_or(d);
                h.vcpus_used = gi("vcpus_used", 0);
                h.free_ram_mb = ints.get("free_ram_mb").map(|c| c[i]);
                h.free_disk_mb = ints.get("free_disk_mb").map(|c| c[i]);
                h.num_instances = gi("num_instances", 0);
                h.num_io_ops = gi("num_io_ops", 0);
                h.failed_builds = gi("failed_builds", 0);
                h.hypervisor_version = gi("hypervisor_version", 0);
                h.free_pci_devs = gi("free_pci_devs", 0);
                h.enabled = bools.get("enabled").map(|c| c[i]).unwrap_or(true);
                h.up = bools.get("up").map(|c| c[i]).unwrap_or(true);
                if let Some(c) = strs.get("hypervisor_type") {
                    h.hypervisor_type = c[i].clone();
                }
                if let Some(c) = strs.get("cell") {
                    h.cell = c[i].clone();
                }
                specs.push(h);
            }
            inner.write().add_hosts(&specs)
        })
    }

    fn remove_host(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let inner = self.inner.clone();
        detached(py, move || inner.write().remove_host(&name))
    }

    #[pyo3(signature = (name, **fields))]
    fn update_host(&self, py: Python<'_>, name: String, fields: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        let mut parsed = Vec::new();
        if let Some(f) = fields {
            for (k, v) in f.iter() {
                let k: String = k.extract()?;
                parsed.push(host_field(&k, &v)?);
            }
        }
        let inner = self.inner.clone();
        detached(py, move || inner.write().update_host(&name, &parsed))
    }

    fn set_aggregate(&self, py: Python<'_>, agg: &Bound<'_, PyAny>) -> PyResult<()> {
        let def = AggregateDef {
            uuid: string(&field(agg, "uuid")?, "aggregate.uuid")?,
            name: string(&field(agg, "name")?, "aggregate.name")?,
            metadata: str_map(&field(agg, "metadata")?, "aggregate.metadata")?,
        };
        let inner = self.inner.clone();
        detached(py, move || inner.write().set_aggregate(def))
    }

    fn remove_aggregate(&self, py: Python<'_>, uuid: String) -> PyResult<()> {
        let inner = self.inner.clone();
        detached(py, move || inner.write().remove_aggregate(&uuid))
    }

    fn add_host_to_aggregate(&self, py: Python<'_>, uuid: String, name: String) -> PyResult<()> {
        let inner = self.inner.clone();
        detached(py, move || inner.write().set_host_aggregate(&uuid, &name, true))
    }

    fn remove_host_from_aggregate(&self, py: Python<'_>, uuid: String, name: String) -> PyResult<()> {
        let inner = self.inner.clone();
        detached(py, move || inner.write().set_host_aggregate(&uuid, &name, false))
    }

    #[pyo3(signature = (name, uuid, image_properties=None))]
    fn add_instance(&self, py: Python<'_>, name: String, uuid: String, image_properties: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let props = match image_properties.filter(|p| !p.is_none()) {
            Some(p) => str_map(p, "image_properties")?,
            None => BTreeMap::new(),
        };
        let inner = self.inner.clone();
        detached(py, move || inner.write().add_instance(&name, &uuid, &props))
    }

    fn remove_instance(&self, py: Python<'_>, uuid: String) -> PyResult<()> {
        let inner = self.inner.clone();
        detached(py, move || inner.write().remove_instance(&uuid))
    }

    #[pyo3(signature = (name, rc, inventory, generation=None))]
    fn set_inventory(&self, py: Python<'_>, name: String, rc: String, inventory: &Bound<'_, PyAny>, generation: Option<&Bound<'_, PyAny>>) -> PyResult<i64> {
        let generation = match generation.filter(|g| !g.is_none()) {
            Some(g) => Some(int(g, "generation")?),
            None => None,
        };
        let rc = rc_index(&rc).map_err(to_py)?;
        let inv = self::inventory(inventory, "inventory")?;
        let inner = self.inner.clone();
        detached(py, move || inner.write().set_inventory(&name, rc, &inv, generation))
    }

    #[pyo3(signature = (consumer, allocations, generations=None))]
    fn claim<'py>(&self, py: Python<'py>, consumer: String, allocations: &Bound<'py, PyAny>, generations: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyDict>> {
        let alloc = allocation(allocations)?;
        let gens = self::generations(generations)?;
        let inner = self.inner.clone();
        let out = detached(py, move || inner.write().claim(&consumer, &alloc, gens.as_deref()))?;
        gens_dict(py, out)
    }

    #[pyo3(signature = (consumer, allocations, generations=None))]
    fn replace<'py>(&self, py: Python<'py>, consumer: String, allocations: &Bound<'py, PyAny>, generations: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyDict>> {
        let alloc = allocation(allocations)?;
        let gens = self::generations(generations)?;
        let inner = self.inner.clone();
        let out = detached(py, move || inner.write().replace(&consumer, &alloc, gens.as_deref()))?;
        gens_dict(py, out)
    }

    fn release(&self, py: Python<'_>, consumer: String) -> PyResult<()> {
        let inner = self.inner.clone();
        detached(py, move || inner.write().release(&consumer).map(|_| ()))
    }

    fn usage<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let t = self.inner.read();
        let r = t.row(name).map_err(to_py)?;
        rc_dict(py, t.usage(r))
    }

    fn capacity<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let t = self.inner.read();
        let r = t.row(name).map_err(to_py)?;
        rc_dict(py, t.capacity(r))
    }

    fn generation(&self, name: &str) -> PyResult<i64> {
        let t = self.inner.read();
        let r = t.row(name).map_err(to_py)?;
        Ok(t.generation[r])
    }

    /// (total, reserved, allocation_ratio, min_unit, max_unit, step_size)
    fn inventory_tuple(&self, name: &str, rc: &str) -> PyResult<(i64, i64, f64, i64, i64, i64)> {
        let t = self.inner.read();
        let r = t.row(name).map_err(to_py)?;
        let i = t.inventory(r, rc_index(rc).map_err(to_py)?);
        Ok((i.total, i.reserved, i.allocation_ratio, i.min_unit, i.max_unit, i.step_size))
    }

    fn allocations<'py>(&self, py: Python<'py>, consumer: &str) -> PyResult<Bound<'py, PyDict>> {
        let t = self.inner.read();
        let out = PyDict::new(py);
        let Some(alloc) = t.consumers.get(consumer) else {
            return Err(to_py(CoreError::UnknownConsumer(format!("consumer {consumer:?} holds no allocations"))));
        };
        for (r, amounts) in alloc {
            let d = PyDict::new(py);
            for (rc, &a) in amounts.iter().enumerate() {
                if a > 0 {
                    d.set_item(RC_NAMES[rc], a)?;
                }
            }
            out.set_item(&t.names[*r as usize], d)?;
        }
        Ok(out)
    }

    fn consumers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.read().consumers.keys().cloned().collect();
        v.sort();
        v
    }

    fn host_names(&self) -> Vec<String> {
        self.inner.read().names.clone()
    }

    fn host_aggregates(&self, name: &str) -> PyResult<Vec<String>> {
        let t = self.inner.read();
        let r = t.row(name).map_err(to_py)?;
        Ok(t.host_aggregates(r))
    }

    fn instances_on(&self, name: &str) -> PyResult<Vec<String>> {
        let t = self.inner.read();
        let r = t.row(name).map_err(to_py)?;
        let mut v = t.host_instances[r].clone();
        v.sort();
        Ok(v)
    }

    #[pyo3(signature = (name, default_availability_zone="nova"))]
    fn availability_zone(&self, name: &str, default_availability_zone: &str) -> PyResult<String> {
        let t = self.inner.read();
        let r = t.row(name).map_err(to_py)?;
        Ok(t.availability_zone(r, default_availability_zone).to_string())
    }

    /// A read-only numpy view of one column; a snapshot that later writes do not touch.
    fn column<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let data = {
            let t = self.inner.read();
            column_data(&t, name).ok_or_else(|| bad(format!("unknown column {name:?} (known: {})", COLUMNS.join(", "))))?
        };
        let owner = Bound::new(py, ColumnOwner { data })?;
        let d = owner.get();
        match &d.data {
            Shared::I64(v) => {
                let v = Arc::clone(v);
                view(&v, owner.clone())
            }
            Shared::F64(v) => {
                let v = Arc::clone(v);
                view(&v, owner.clone())
            }
            Shared::Bool(v) => {
                let v = Arc::clone(v);
                view(&v, owner.clone())
            }
        }
    }
}

const COLUMNS: &[&str] = &[
    "generation", "vcpus_used", "free_ram_mb", "free_disk_mb", "num_instances", "num_io_ops", "failed_builds",
    "hypervisor_version", "free_pci_devs", "enabled", "up", "maxphysaddr_bits",
    "vcpu_total", "vcpu_reserved", "vcpu_allocation_ratio", "vcpu_min_unit", "vcpu_max_unit", "vcpu_step_size", "vcpu_used", "vcpu_capacity",
    "memory_mb_total", "memory_mb_reserved", "memory_mb_allocation_ratio", "memory_mb_min_unit", "memory_mb_max_unit", "memory_mb_step_size", "memory_mb_used", "memory_mb_capacity",
    "disk_gb_total", "disk_gb_reserved", "disk_gb_allocation_ratio", "disk_gb_min_unit", "disk_gb_max_unit", "disk_gb_step_size", "disk_gb_used", "disk_gb_capacity",
];

/// Column kinds accepted by `add_hosts`: i(nt64), f(loat64), b(ool).
fn bulk_kind(name: &str) -> Option<char> {
    match name {
        "enabled" | "up" => Some('b'),
        n if n.ends_with("_allocation_ratio") && ["vcpu", "memory_mb", "disk_gb"].iter().any(|p| n == format!("{p}_allocation_ratio")) => Some('f'),
        "vcpus_used" | "free_ram_mb" | "free_disk_mb" | "num_instances" | "num_io_ops" | "failed_builds" | "hypervisor_version" | "free_pci_devs" => Some('i'),
        n => {
            let ok = ["vcpu", "memory_mb", "disk_gb"].iter().any(|p| {
                ["total", "reserved", "min_unit", "max_unit", "step_size"].iter().any(|s| n == format!("{p}_{s}"))
            });
            ok.then_some('i')
        }
    }
}

fn column_data(t: &Table, name: &str) -> Option<Shared> {
    use Shared::*;
    Some(match name {
        "generation" => I64(t.generation.shared()),
        "vcpus_used" => I64(t.vcpus_used.shared()),
        "free_ram_mb" => I64(t.free_ram_mb.shared()),
        "free_disk_mb" => I64(t.free_disk_mb.shared()),
        "num_instances" => I64(t.num_instances.shared()),
        "num_io_ops" => I64(t.num_io_ops.shared()),
        "failed_builds" => I64(t.failed_builds.shared()),
        "hypervisor_version" => I64(t.hypervisor_version.shared()),
        "free_pci_devs" => I64(t.free_pci_devs.shared()),
        "maxphysaddr_bits" => F64(t.maxphysaddr_bits.shared()),
        "enabled" => Bool(t.enabled.shared()),
        "up" => Bool(t.up.shared()),
        n => {
            let (prefix, suffix) = ["vcpu_", "memory_mb_", "disk_gb_"].iter().find_map(|p| n.strip_prefix(p).map(|s| (*p, s)))?;
            let rc = match prefix {
                "vcpu_" => 0,
                "memory_mb_" => 1,
                _ => 2,
            };
            let c = &t.rc[rc];
            match suffix {
                "total" => I64(c.total.shared()),
                "reserved" => I64(c.reserved.shared()),
                "allocation_ratio" => F64(c.allocation_ratio.shared()),
                "min_unit" => I64(c.min_unit.shared()),
                "max_unit" => I64(c.max_unit.shared()),
                "step_size" => I64(c.step_size.shared()),
                "used" => I64(c.used.shared()),
                "capacity" => I64(c.capacity.shared()),
                _ => return None,
            }
        }
    })
}

fn dtype_of(v: &Bound<'_, PyAny>) -> String {
    v.getattr("dtype").and_then(|d| d.str()).map(|s| s.to_string()).unwrap_or_else(|_| type_name(v))
}

// ---- requests and the scheduler ----------------------------------------------------

/// A request spec validated once, reusable across calls.
#[pyclass(frozen, module = "novalite._placement")]
pub struct PreparedRequest {
    req: Arc<Request>,
}

#[pymethods]
impl PreparedRequest {
    #[getter]
    fn amounts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (i, &a) in self.req.amounts.iter().enumerate() {
            if a > 0 {
                d.set_item(RC_NAMES[i], a)?;
            }
        }
        Ok(d)
    }

    #[getter]
    fn num_instances(&self) -> usize {
        self.req.input.instance_uuids.len()
    }
}

fn request_input(spec: &Bound<'_, PyAny>) -> PyResult<RequestInput> {
    let flavor = field(spec, "flavor")?;
    let image = field(spec, "image")?;
    let (image_id, image_properties) = if image.is_none() {
        (None, BTreeMap::new())
    } else {
        (opt_string(&field(&image, "id")?, "image.id")?, image_props(&field(&image, "properties")?)?)
    };
    let group = field(spec, "instance_group")?;
    let group = if group.is_none() {
        None
    } else {
        let max = field(&group, "max_server_per_host")?;
        Some((
            string(&field(&group, "uuid")?, "instance_group.uuid")?,
            string(&field(&group, "policy")?, "instance_group.policy")?,
            strings(&field(&group, "members")?, "instance_group.members")?,
            strings(&field(&group, "hosts")?, "instance_group.hosts")?,
            if max.is_none() { None } else { Some(int(&max, "instance_group.max_server_per_host")?) },
        ))
    };
    let mut member_of = Vec::new();
    for g in field(spec, "member_of")?.try_iter().map_err(|_| bad("member_of must be a list of lists"))? {
        member_of.push(strings(&g?, "member_of[]")?);
    }
    Ok(RequestInput {
        flavor_name: string(&field(&flavor, "name")?, "flavor.name")?,
        vcpus: int(&field(&flavor, "vcpus")?, "flavor.vcpus")?,
        memory_mb: int(&field(&flavor, "memory_mb")?, "flavor.memory_mb")?,
        root_gb: int(&field(&flavor, "root_gb")?, "flavor.root_gb")?,
        ephemeral_gb: int(&field(&flavor, "ephemeral_gb")?, "flavor.ephemeral_gb")?,
        swap: int(&field(&flavor, "swap")?, "flavor.swap")?,
        extra_specs: str_map(&field(&flavor, "extra_specs")?, "flavor.extra_specs")?.into_iter().collect(),
        image_id,
        image_properties,
        project_id: string(&field(spec, "project_id")?, "project_id")?,
        instance_uuids: strings(&field(spec, "instance_uuids")?, "instance_uuids")?,
        group,
        same_host: strings(&field(spec, "same_host")?, "same_host")?,
        different_host: strings(&field(spec, "different_host")?, "different_host")?,
        availability_zone: opt_string(&field(spec, "availability_zone")?, "availability_zone")?,
        required_traits: strings(&field(spec, "required_traits")?, "required_traits")?,
        forbidden_traits: strings(&field(spec, "forbidden_traits")?, "forbidden_traits")?,
        member_of,
        forbidden_aggregates: strings(&field(spec, "forbidden_aggregates")?, "forbidden_aggregates")?,
        ignore_hosts: strings(&field(spec, "ignore_hosts")?, "ignore_hosts")?,
        force_hosts: strings(&field(spec, "force_hosts")?, "force_hosts")?,
        force_nodes: strings(&field(spec, "force_nodes")?, "force_nodes")?,
        requested_host: opt_string(&field(spec, "requested_host")?, "requested_host")?,
        requested_node: opt_string(&field(spec, "requested_node")?, "requested_node")?,
        requested_cell: opt_string(&field(spec, "requested_cell")?, "requested_cell")?,
        allow_cross_cell_move: boolean(&field(spec, "allow_cross_cell_move")?, "allow_cross_cell_move")?,
        is_bfv: boolean(&field(spec, "is_bfv")?, "is_bfv")?,
        is_rebuild: boolean(&field(spec, "is_rebuild")?, "is_rebuild")?,
    })
}

/// Image properties as Nova stringifies them (`str(value)`).
fn image_props(obj: &Bound<'_, PyAny>) -> PyResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in items(obj, "image.properties")? {
        let k = string(&k, "image.properties key")?;
        let v = if v.is_instance_of::<pyo3::types::PyString>() { v.extract::<String>()? } else { v.str()?.to_string() };
        out.insert(k, v);
    }
    Ok(out)
}

fn instance_index(obj: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
    let Some(obj) = obj else { return Ok(0) };
    let i = int(obj, "index")?;
    usize::try_from(i).map_err(|_| bad(format!("index must be >= 0, got {i}")))
}

fn config_from(obj: &Bound<'_, PyAny>) -> PyResult<Config> {
    use crate::core::config::WeigherKind;
    let mut cfg = Config::default();
    cfg.set_filters(&strings(&field(obj, "enabled_filters")?, "enabled_filters")?).map_err(to_py)?;
    cfg.set_weighers(&strings(&field(obj, "weight_classes")?, "weight_classes")?).map_err(to_py)?;
    let size = |name: &str| -> PyResult<usize> {
        let v = int(&field(obj, name)?, name)?;
        usize::try_from(v).map_err(|_| bad(format!("{name} must be >= 1")))
    };
    cfg.host_subset_size = size("host_subset_size")?;
    cfg.max_attempts = size("max_attempts")?;
    cfg.shuffle_best_same_weighed_hosts = boolean(&field(obj, "shuffle_best_same_weighed_hosts")?, "shuffle_best_same_weighed_hosts")?;
    cfg.max_io_ops_per_host = int(&field(obj, "max_io_ops_per_host")?, "max_io_ops_per_host")?;
    cfg.max_instances_per_host = int(&field(obj, "max_instances_per_host")?, "max_instances_per_host")?;
    for w in WeigherKind::all() {
        let v = float(&field(obj, w.option())?, w.option())?;
        cfg.multipliers[w.index()] = v;
    }
    cfg.image_props_weight_setting = float_pairs(&field(obj, "image_props_weight_setting")?, "image_props_weight_setting")?;
    cfg.image_properties_default_architecture =
        opt_string(&field(obj, "image_properties_default_architecture")?, "image_properties_default_architecture")?;
    cfg.isolated_images = strings(&field(obj, "isolated_images")?, "isolated_images")?;
    cfg.isolated_hosts = strings(&field(obj, "isolated_hosts")?, "isolated_hosts")?;
    cfg.restrict_isolated_hosts_to_isolated_images =
        boolean(&field(obj, "restrict_isolated_hosts_to_isolated_images")?, "restrict_isolated_hosts_to_isolated_images")?;
    cfg.aggregate_image_properties_isolation_namespace = opt_string(
        &field(obj, "aggregate_image_properties_isolation_namespace")?,
        "aggregate_image_properties_isolation_namespace",
    )?;
    cfg.aggregate_image_properties_isolation_separator = string(
        &field(obj, "aggregate_image_properties_isolation_separator")?,
        "aggregate_image_properties_isolation_separator",
    )?;
    cfg.metrics_weight_setting = float_pairs(&field(obj, "metrics_weight_setting")?, "metrics_weight_setting")?;
    cfg.metrics_required = boolean(&field(obj, "metrics_required")?, "metrics_required")?;
    cfg.metrics_weight_of_unavailable = float(&field(obj, "metrics_weight_of_unavailable")?, "metrics_weight_of_unavailable")?;
    cfg.default_availability_zone = string(&field(obj, "default_availability_zone")?, "default_availability_zone")?;
    cfg.validate().map_err(to_py)?;
    Ok(cfg)
}

#[pyclass(frozen, module = "novalite._placement")]
pub struct Scheduler {
    table: Arc<RwLock<Table>>,
    cfg: Arc<Config>,
}

impl Scheduler {
    fn request(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Arc<Request>> {
        if let Ok(p) = spec.cast::<PreparedRequest>() {
            return Ok(Arc::clone(&p.get().req));
        }
        let input = request_input(spec)?;
        detached(py, move || Request::compile(input)).map(Arc::new)
    }
}

#[pymethods]
impl Scheduler {
    #[new]
    fn new(table: &Bound<'_, HostTable>, config: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Scheduler { table: table.get().inner.clone(), cfg: Arc::new(config_from(config)?) })
    }

    fn prepare(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<PreparedRequest> {
        Ok(PreparedRequest { req: self.request(py, spec)? })
    }

    /// (mask over all rows, [(check, hosts removed)])
    #[pyo3(signature = (spec, index=None))]
    fn filter<'py>(&self, py: Python<'py>, spec: &Bound<'py, PyAny>, index: Option<&Bound<'py, PyAny>>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>)> {
        let index = instance_index(index)?;
        let req = self.request(py, spec)?;
        let (table, cfg) = (self.table.clone(), self.cfg.clone());
        let (mask, rejections) = detached(py, move || {
            let t = table.read();
            let out = select::filter(&t, &cfg, &req, index)?;
            let mut mask = vec![false; t.len()];
            for &r in &out.survivors {
                mask[r as usize] = true;
            }
            Ok((mask, out.rejections()))
        })?;
        Ok((mask.into_pyarray(py).into_any(), PyList::new(py, rejections)?))
    }

    #[pyo3(signature = (spec, index=None))]
    fn weigh<'py>(&self, py: Python<'py>, spec: &Bound<'py, PyAny>, index: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let index = instance_index(index)?;
        let req = self.request(py, spec)?;
        let (table, cfg) = (self.table.clone(), self.cfg.clone());
        let w = detached(py, move || select::weigh(&table.read(), &cfg, &req, index))?;
        Ok(w.into_pyarray(py))
    }

    /// ({rc: amount}, [(check, removed)], [(instance_uuid, [(row, host, host_uuid, weight, az, cell), chosen first])])
    #[pyo3(signature = (spec, claim=true, seed=0, return_alternates=true))]
    fn select<'py>(&self, py: Python<'py>, spec: &Bound<'py, PyAny>, claim: bool, seed: u128, return_alternates: bool) -> PyResult<Bound<'py, PyTuple>> {
        let req = self.request(py, spec)?;
        let (table, cfg) = (self.table.clone(), self.cfg.clone());
        let opts = SelectOptions { claim, seed, return_alternates };
        let amounts = req.amounts;
        type Picks = Vec<(String, Vec<(usize, String, String, f64, String, String)>)>;
        let (rejections, picks): (Vec<(String, u64)>, Picks) = detached(py, move || {
            let describe = |t: &Table, out: select::Outcome| {
                let picks = out
                    .selections
                    .iter()
                    .map(|s| {
                        let picks = std::iter::once(&s.chosen)
                            .chain(&s.alternates)
                            .map(|p| {
                                (
                                    p.row,
                                    t.names[p.row].clone(),
                                    t.uuids[p.row].clone(),
                                    p.weight,
                                    t.availability_zone(p.row, &cfg.default_availability_zone).to_string(),
                                    t.cell_name(p.row).to_string(),
                                )
                            })
                            .collect();
                        (s.instance_uuid.clone(), picks)
                    })
                    .collect();
                (out.rejections, picks)
            };
            if claim {
                let mut t = table.write();
                let out = select::select(&t, &cfg, &req, &opts)?;
                select::commit(&mut t, &req, &out.selections);
                Ok(describe(&t, out))
            } else {
                let t = table.read();
                let out = select::select(&t, &cfg, &req, &opts)?;
                Ok(describe(&t, out))
            }
        })?;
        let amounts_dict = PyDict::new(py);
        for (i, &a) in amounts.iter().enumerate() {
            if a > 0 {
                amounts_dict.set_item(RC_NAMES[i], a)?;
            }
        }
        PyTuple::new(py, [amounts_dict.into_any(), PyList::new(py, rejections)?.into_any(), PyList::new(py, picks)?.into_any()])
    }
}

#[pymodule]
fn _placement(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HostTable>()?;
    m.add_class::<Scheduler>()?;
    m.add_class::<PreparedRequest>()?;
    m.add("RESOURCE_CLASSES", RC_NAMES.to_vec())?;
    m.add("COLUMNS", COLUMNS.to_vec())?;
    Ok(())
}
