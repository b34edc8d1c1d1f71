//! Name validation. Names of tenants, compute planes, clusters and catalogs end up in
//! Kubernetes object names, labels and file names, so they must be DNS-1123 labels.

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// Longer than 63 characters.
    #[error("must be at most 63 characters, got {0}")]
    TooLong(usize),
    /// Not lower-case alphanumerics and '-', starting and ending with an alphanumeric.
    #[error(
        "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"
    )]
    NotDns1123,
}

/// Checks that `name` is a DNS-1123 label (RFC 1123): 1-63 characters of `[a-z0-9-]`,
/// beginning and ending with an alphanumeric.
pub fn validate_dns1123_label(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 63 {
        return Err(NameError::TooLong(name.len()));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first = name.chars().next().is_some_and(alnum);
    let last = name.chars().last().is_some_and(alnum);
    if !first || !last || !name.chars().all(ok_char) {
        return Err(NameError::NotDns1123);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_labels() {
        for n in ["a", "acme", "prod-1", "0abc", &"x".repeat(63)] {
            assert_eq!(validate_dns1123_label(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_non_labels() {
        assert_eq!(validate_dns1123_label(""), Err(NameError::Empty));
        assert_eq!(
            validate_dns1123_label(&"x".repeat(64)),
            Err(NameError::TooLong(64))
        );
        for n in ["Acme", "-a", "a-", "a_b", "a.b", "a b", "ä", "a\nb", "a=b"] {
            assert_eq!(
                validate_dns1123_label(n),
                Err(NameError::NotDns1123),
                "{n:?}"
            );
        }
    }
}
