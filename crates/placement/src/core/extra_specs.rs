//! `nova/scheduler/filters/extra_specs_ops.py`: the operators flavor extra specs use
//! against host capabilities and aggregate metadata.

use super::pyfmt::{py_float, py_split};

fn numeric(x: &str, y: &str, f: fn(f64, f64) -> bool) -> bool {
    // Nova lets float()'s ValueError escape; here a value that is not a number
    // simply does not match.
    match (py_float(x), py_float(y)) {
        (Some(a), Some(b)) => f(a, b),
        _ => false,
    }
}

/// `extra_specs_ops.match(value, req)`; `value` is `None` where Nova passes `None`.
pub fn matches(value: Option<&str>, req: &str) -> bool {
    let mut words = py_split(req);
    let op = if words.is_empty() { None } else { Some(words.remove(0)) };
    let known = matches!(
        op,
        Some("=" | "<in>" | "<all-in>" | "==" | "!=" | ">=" | "<=" | "s==" | "s!=" | "s<" | "s<=" | "s>" | "s>=")
    );
    if op != Some("<or>") && !known {
        return value == Some(req);
    }
    let Some(value) = value else { return false };
    if op == Some("<or>") {
        // "<or> v1 <or> v2": every other word is a candidate.
        let mut i = 0;
        loop {
            if i >= words.len() {
                // Nova's words.pop(0) raises IndexError here: no match.
                return false;
            }
            if words[i] == value {
                return true;
            }
            i += 1;
            if i >= words.len() {
                break;
            }
            i += 1; // the "<or>" keyword
            if i >= words.len() {
                break;
            }
        }
        return false;
    }
    if words.is_empty() {
        return false;
    }
    let y = words[0];
    match op.unwrap_or_default() {
        "=" => numeric(value, y, |a, b| a >= b),
        "<in>" => value.contains(y),
        "<all-in>" => words.iter().all(|w| value.contains(w)),
        "==" => numeric(value, y, |a, b| a == b),
        "!=" => numeric(value, y, |a, b| a != b),
        ">=" => numeric(value, y, |a, b| a >= b),
        "<=" => numeric(value, y, |a, b| a <= b),
        "s==" => value == y,
        "s!=" => value != y,
        "s<" => value < y,
        "s<=" => value <= y,
        "s>" => value > y,
        "s>=" => value >= y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn operators_follow_nova() {
        assert!(matches(Some("1024"), "= 512"));
        assert!(!matches(Some("256"), "= 512"));
        assert!(matches(Some("12"), "== 12.0"));
        assert!(matches(Some("12"), "!= 13"));
        assert!(matches(Some("5"), "<= 5"));
        assert!(matches(Some("abc"), "s== abc"));
        assert!(matches(Some("abd"), "s> abc"));
        assert!(matches(Some("avx avx2 aes"), "<in> avx2"));
        assert!(matches(Some("avx avx2 aes"), "<all-in> aes avx"));
        assert!(!matches(Some("avx"), "<all-in> aes avx"));
        assert!(matches(Some("kvm"), "<or> qemu <or> kvm"));
        assert!(!matches(Some("xen"), "<or> qemu <or> kvm"));
        assert!(!matches(Some("kvm"), "<or>"));
        assert!(matches(Some("plain"), "plain"));
        assert!(!matches(None, "plain"));
        assert!(!matches(Some("x86"), ">= 3"));
        assert!(!matches(Some("1"), "="));
        assert!(matches(Some(""), ""));
    }
}
