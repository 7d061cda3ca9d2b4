//! A request spec, validated once: the resource request Nova's
//! `ResourceRequest.from_request_spec` derives, and the image properties the filters
//! read, canonicalized as `nova.objects.fields` does.

use std::collections::{BTreeMap, HashSet};

use super::error::{invalid, CoreResult};
use super::pyfmt::{py_int, py_strip};
use super::table::{rc_index, DISK_GB, MAX_AMOUNT, MEMORY_MB, N_RC, VCPU};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Affinity,
    AntiAffinity,
    SoftAffinity,
    SoftAntiAffinity,
}

impl Policy {
    pub fn parse(s: &str) -> CoreResult<Self> {
        Ok(match s {
            "affinity" => Policy::Affinity,
            "anti-affinity" => Policy::AntiAffinity,
            "soft-affinity" => Policy::SoftAffinity,
            "soft-anti-affinity" => Policy::SoftAntiAffinity,
            _ => {
                return invalid(format!(
                    "instance_group.policy: unknown policy {s:?} (affinity, anti-affinity, soft-affinity, soft-anti-affinity)"
                ))
            }
        })
    }
}

#[derive(Clone, Debug)]
pub struct Group {
    pub uuid: String,
    pub policy: Policy,
    pub members: Vec<String>,
    pub member_set: HashSet<String>,
    pub hosts: Vec<String>,
    pub max_server_per_host: Option<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct RequestInput {
    pub flavor_name: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub root_gb: i64,
    pub ephemeral_gb: i64,
    pub swap: i64,
    pub extra_specs: Vec<(String, String)>,
    pub image_id: Option<String>,
    pub image_properties: BTreeMap<String, String>,
    pub project_id: String,
    pub instance_uuids: Vec<String>,
    pub group: Option<(String, String, Vec<String>, Vec<String>, Option<i64>)>,
    pub same_host: Vec<String>,
    pub different_host: Vec<String>,
    pub availability_zone: Option<String>,
    pub required_traits: Vec<String>,
    pub forbidden_traits: Vec<String>,
    pub member_of: Vec<Vec<String>>,
    pub forbidden_aggregates: Vec<String>,
    pub ignore_hosts: Vec<String>,
    pub force_hosts: Vec<String>,
    pub force_nodes: Vec<String>,
    pub requested_host: Option<String>,
    pub requested_node: Option<String>,
    pub requested_cell: Option<String>,
    pub allow_cross_cell_move: bool,
    pub is_bfv: bool,
    pub is_rebuild: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionOp {
    Lt,
    Le,
    Eq,
    Gt,
    Ge,
    Ne,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub input: RequestInput,
    pub amounts: [i64; N_RC],
    pub required_traits: Vec<String>,
    pub forbidden_traits: Vec<String>,
    pub group: Option<Group>,
    /// `hw_architecture` (canonical), `img_hv_type`, `hw_vm_mode`.
    pub img_arch: Option<String>,
    pub img_hv_type: Option<String>,
    pub img_vm_mode: Option<String>,
    pub img_hv_requested_version: Option<Vec<(VersionOp, Vec<u64>)>>,
    pub img_maxphysaddr_bits: Option<i64>,
}

const ARCHES: &[&str] = &[
    "alpha", "armv6", "armv7l", "armv7b", "aarch64", "cris", "i686", "ia64", "lm32", "m68k", "microblaze",
    "microblazeel", "mips", "mipsel", "mips64", "mips64el", "openrisc", "parisc", "parisc64", "ppc", "ppcle",
    "ppc64", "ppc64le", "ppcemb", "s390", "s390x", "sh4", "sh4eb", "sparc", "sparc64", "unicore32", "x86_64",
    "xtensa", "xtensaeb",
];
const HV_TYPES: &[&str] = &[
    "baremetal", "bhyve", "docker", "fake", "hyperv", "ironic", "kqemu", "kvm", "lxc", "lxd", "openvz",
    "parallels", "phyp", "qemu", "test", "uml", "vbox", "vz", "vmware", "xen", "zvm", "prsm",
];
const VM_MODES: &[&str] = &["hvm", "xen", "uml", "exe"];

/// `fields.Architecture.canonicalize`.
pub fn canonical_arch(name: &str) -> CoreResult<String> {
    let mut n = name.to_lowercase();
    if matches!(n.as_str(), "i386" | "i486" | "i586" | "x86_32" | "x86_32p") {
        n = "i686".into();
    }
    if n == "amd64" {
        n = "x86_64".into();
    }
    if !ARCHES.contains(&n.as_str()) {
        return invalid(format!("image property hw_architecture: unknown architecture {name:?}"));
    }
    Ok(n)
}

/// `fields.HVType.canonicalize`.
pub fn canonical_hv_type(name: &str) -> CoreResult<String> {
    let mut n = name.to_lowercase();
    if n == "xapi" {
        n = "xen".into();
    }
    if !HV_TYPES.contains(&n.as_str()) {
        return invalid(format!("image property img_hv_type: unknown hypervisor type {name:?}"));
    }
    Ok(n)
}

/// `fields.VMMode.canonicalize`.
pub fn canonical_vm_mode(name: &str) -> CoreResult<String> {
    let mut n = name.to_lowercase();
    if n == "pv" {
        n = "xen".into();
    }
    if n == "hv" || n == "baremetal" {
        n = "hvm".into();
    }
    if !VM_MODES.contains(&n.as_str()) {
        return invalid(format!("image property hw_vm_mode: unknown vm mode {name:?}"));
    }
    Ok(n)
}

/// `oslo_utils.versionutils.VersionPredicate`, for release versions (digits and dots).
fn parse_version_predicate(s: &str) -> CoreResult<Vec<(VersionOp, Vec<u64>)>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let t = py_strip(part);
        let (op, rest) = [("<=", VersionOp::Le), (">=", VersionOp::Ge), ("==", VersionOp::Eq), ("!=", VersionOp::Ne), ("<", VersionOp::Lt), (">", VersionOp::Gt)]
            .iter()
            .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, py_strip(r))))
            .ok_or_else(|| super::error::CoreError::InvalidInput(format!("img_hv_requested_version: bad predicate {part:?}")))?;
        let version = parse_release(rest)
            .ok_or_else(|| super::error::CoreError::InvalidInput(format!("img_hv_requested_version: bad version {rest:?} (digits and dots only)")))?;
        out.push((op, version));
    }
    Ok(out)
}

fn parse_release(s: &str) -> Option<Vec<u64>> {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return None;
    }
    s.split('.').map(|p| if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() { p.parse().ok() } else { None }).collect()
}

/// PEP 440 release comparison: trailing zeros do not count (1.0 == 1.0.0).
fn cmp_release(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        match x.cmp(&y) {
            std::cmp::Ordering::Equal => continue,
            o => return o,
        }
    }
    std::cmp::Ordering::Equal
}

/// `convert_version_to_str`: 6002001 -> [6, 2, 1].
pub fn version_from_int(mut v: i64) -> Vec<u64> {
    let mut parts = Vec::new();
    while v != 0 {
        parts.insert(0, (v % 1000) as u64);
        v /= 1000;
    }
    parts
}

pub fn version_satisfies(pred: &[(VersionOp, Vec<u64>)], version: &[u64]) -> bool {
    use std::cmp::Ordering::*;
    pred.iter().all(|(op, v)| {
        let o = cmp_release(version, v);
        match op {
            VersionOp::Lt => o == Less,
            VersionOp::Le => o != Greater,
            VersionOp::Eq => o == Equal,
            VersionOp::Ne => o != Equal,
            VersionOp::Gt => o == Greater,
            VersionOp::Ge => o != Less,
        }
    })
}

fn check_str(what: &str, v: &str) -> CoreResult<()> {
    if v.is_empty() {
        return invalid(format!("{what} must not be empty"));
    }
    if v.len() > 255 {
        return invalid(format!("{what} must be at most 255 bytes"));
    }
    Ok(())
}

fn check_size(what: &str, v: i64, min: i64) -> CoreResult<()> {
    if v < min || v > MAX_AMOUNT {
        return invalid(format!("{what} must be between {min} and {MAX_AMOUNT}, got {v}"));
    }
    Ok(())
}

impl Request {
    pub fn compile(mut input: RequestInput) -> CoreResult<Self> {
        if input.availability_zone.as_deref() == Some("") {
            input.availability_zone = None;
        }
        if input.requested_node.as_deref() == Some("") {
            input.requested_node = None;
        }
        check_str("flavor.name", &input.flavor_name)?;
        check_size("flavor.vcpus", input.vcpus, 0)?;
        check_size("flavor.memory_mb", input.memory_mb, 0)?;
        check_size("flavor.root_gb", input.root_gb, 0)?;
        check_size("flavor.ephemeral_gb", input.ephemeral_gb, 0)?;
        check_size("flavor.swap", input.swap, 0)?;
        if input.instance_uuids.is_empty() {
            return invalid("instance_uuids: at least one instance is required");
        }
        let mut seen = HashSet::new();
        for u in &input.instance_uuids {
            check_str("instance_uuids[]", u)?;
            if !seen.insert(u.as_str()) {
                return invalid(format!("instance_uuids: {u:?} is listed twice"));
            }
        }
        for (k, _) in &input.extra_specs {
            check_str("flavor.extra_specs key", k)?;
        }
        // ResourceRequest: flavor amounts, then resources:RC overrides, then traits.
        let mut amounts = [0i64; N_RC];
        amounts[VCPU] = input.vcpus;
        amounts[MEMORY_MB] = input.memory_mb;
        let swap_gb = (input.swap + 1023) / 1024;
        amounts[DISK_GB] = if input.is_bfv { 0 } else { input.root_gb } + input.ephemeral_gb + swap_gb;
        let mut required: Vec<String> = Vec::new();
        let mut forbidden: Vec<String> = Vec::new();
        for (k, v) in &input.extra_specs {
            if let Some(rc) = k.strip_prefix("resources:") {
                let n = py_int(v).filter(|n| (0..=MAX_AMOUNT).contains(n)).ok_or_else(|| {
                    super::error::CoreError::InvalidInput(format!("flavor.extra_specs {k:?}: amount must be an integer >= 0, got {v:?}"))
                })?;
                match rc_index(rc) {
                    Ok(rc) => amounts[rc] = n,
                    // asking for none of a class we do not model is harmless
                    Err(_) if n == 0 => {}
                    Err(_) => {
                        return invalid(format!(
                            "flavor.extra_specs {k:?}: unknown resource class (known: VCPU, MEMORY_MB, DISK_GB)"
                        ))
                    }
                }
            } else if k.starts_with("resources") && k.contains(':') {
                return invalid(format!("flavor.extra_specs {k:?}: granular resource groups are not supported"));
            } else if let Some(t) = k.strip_prefix("trait:") {
                check_str("trait name", t)?;
                match v.as_str() {
                    "required" => required.push(t.to_string()),
                    "forbidden" => forbidden.push(t.to_string()),
                    _ => return invalid(format!("flavor.extra_specs {k:?}: must be 'required' or 'forbidden', got {v:?}")),
                }
            }
        }
        if amounts.iter().all(|&a| a == 0) {
            return invalid("the request asks for no resources (VCPU, MEMORY_MB and DISK_GB are all 0)");
        }
        for t in input.required_traits.iter() {
            check_str("required_traits[]", t)?;
            required.push(t.clone());
        }
        for t in input.forbidden_traits.iter() {
            check_str("forbidden_traits[]", t)?;
            forbidden.push(t.clone());
        }
        required.sort();
        required.dedup();
        forbidden.sort();
        forbidden.dedup();
        if let Some(t) = required.iter().find(|t| forbidden.contains(t)) {
            return invalid(format!("trait {t:?} is both required and forbidden"));
        }
        for (i, g) in input.member_of.iter().enumerate() {
            if g.is_empty() {
                return invalid(format!("member_of[{i}]: must name at least one aggregate"));
            }
        }
        if input.requested_node.is_some() && input.requested_host.is_none() {
            return invalid("requested_node needs requested_host");
        }
        let group = match &input.group {
            None => None,
            Some((uuid, policy, members, hosts, max)) => {
                check_str("instance_group.uuid", uuid)?;
                let policy = Policy::parse(policy)?;
                if let Some(m) = max {
                    if policy != Policy::AntiAffinity {
                        return invalid("instance_group.max_server_per_host: only the anti-affinity policy takes rules");
                    }
                    if *m < 1 {
                        return invalid(format!("instance_group.max_server_per_host must be >= 1, got {m}"));
                    }
                }
                Some(Group {
                    uuid: uuid.clone(),
                    policy,
                    members: members.clone(),
                    member_set: members.iter().cloned().collect(),
                    hosts: hosts.clone(),
                    max_server_per_host: *max,
                })
            }
        };
        let props = &input.image_properties;
        let img_arch = props.get("hw_architecture").map(|a| canonical_arch(a)).transpose()?;
        let img_hv_type = props.get("img_hv_type").map(|a| canonical_hv_type(a)).transpose()?;
        let img_vm_mode = props.get("hw_vm_mode").map(|a| canonical_vm_mode(a)).transpose()?;
        let img_hv_requested_version = props
            .get("img_hv_requested_version")
            .filter(|v| !v.is_empty())
            .map(|v| parse_version_predicate(v))
            .transpose()?;
        let img_maxphysaddr_bits = match props.get("hw_maxphysaddr_bits") {
            None => None,
            Some(v) => Some(py_int(v).filter(|b| *b >= 0).ok_or_else(|| {
                super::error::CoreError::InvalidInput(format!("image property hw_maxphysaddr_bits must be an integer >= 0, got {v:?}"))
            })?),
        };
        Ok(Request {
            amounts,
            required_traits: required,
            forbidden_traits: forbidden,
            group,
            img_arch,
            img_hv_type,
            img_vm_mode,
            img_hv_requested_version,
            img_maxphysaddr_bits,
            input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RequestInput {
        RequestInput {
            flavor_name: "m1.small".into(),
            vcpus: 2,
            memory_mb: 2048,
            root_gb: 20,
            ephemeral_gb: 5,
            swap: 1025,
            instance_uuids: vec!["i1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn resource_request_follows_nova() {
        let r = Request::compile(base()).unwrap();
        assert_eq!(r.amounts, [2, 2048, 27]); // 20 + 5 + ceil(1025/1024)
        let mut i = base();
        i.is_bfv = true;
        i.extra_specs = vec![("resources:VCPU".into(), "0".into()), ("trait:HW_CPU_X86_AVX".into(), "required".into())];
        let r = Request::compile(i).unwrap();
        assert_eq!(r.amounts, [0, 2048, 7]);
        assert_eq!(r.required_traits, vec!["HW_CPU_X86_AVX"]);
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut i = base();
        i.vcpus = -1;
        assert!(Request::compile(i).is_err());
        let mut i = base();
        i.extra_specs = vec![("resources:GPU".into(), "1".into())];
        assert!(Request::compile(i).is_err());
        let mut i = base();
        i.image_properties.insert("hw_architecture".into(), "z80".into());
        assert!(Request::compile(i).is_err());
        let mut i = base();
        i.instance_uuids = vec!["a".into(), "a".into()];
        assert!(Request::compile(i).is_err());
    }

    #[test]
    fn versions_compare_as_pep440_releases() {
        let p = parse_version_predicate(">=6.0, <7").unwrap();
        assert!(version_satisfies(&p, &version_from_int(6002000)));
        assert!(!version_satisfies(&p, &version_from_int(7000000)));
        assert_eq!(canonical_arch("AMD64").unwrap(), "x86_64");
        assert_eq!(canonical_vm_mode("hv").unwrap(), "hvm");
    }
}
