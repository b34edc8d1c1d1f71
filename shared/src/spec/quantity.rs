//! Kubernetes resource quantities, just enough to validate specs and size the JVM.

/// CPU in millicores from a quantity such as `2`, `0.5` or `500m`.
pub fn cpu_millis(q: &str) -> Option<u64> {
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<u64>().ok().filter(|v| *v > 0);
    }
    let cores: f64 = q.parse().ok()?;
    (cores.is_finite() && cores > 0.0).then(|| (cores * 1000.0).round() as u64)
}

/// Memory in bytes from a quantity such as `8Gi`, `512Mi`, `2G` or `1073741824`.
pub fn memory_bytes(q: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (num, mult) = UNITS
        .iter()
        .find_map(|(suffix, mult)| q.strip_suffix(suffix).map(|n| (n, *mult)))
        .unwrap_or((q, 1));
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities() {
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(cpu_millis("-1"), None);
        assert_eq!(cpu_millis("x"), None);
        assert_eq!(memory_bytes("8Gi"), Some(8 << 30));
        assert_eq!(memory_bytes("512Mi"), Some(512 << 20));
        assert_eq!(memory_bytes("2G"), Some(2_000_000_000));
        assert_eq!(memory_bytes("1.5Gi"), None);
        assert_eq!(memory_bytes("Gi"), None);
        assert_eq!(memory_bytes("0"), None);
    }
}
