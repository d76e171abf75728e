//! Volume names: docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, so a name is always one plain path
//! component of `volumes/` (never `..`, never a `/`, never a staging directory's leading dot).

use super::VolumeError;

/// Refuses a name docker's local driver would refuse.
pub fn check_name(name: &str) -> Result<(), VolumeError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    // A name of 1 character is valid for docker too, but a `..` can never pass the first rule.
    if first_ok && rest_ok && name.len() <= 255 {
        Ok(())
    } else {
        Err(VolumeError::InvalidName(name.to_string()))
    }
}

/// Whether `name` has the form nook (and docker) gives anonymous volumes: 64 hex digits.
pub fn is_anonymous_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        for good in ["a", "data", "my-vol_1.2", "0abc"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", ".", "..", "../etc", "a/b", "/abs", "_x", ".x", "a:b", "a b", "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let long = "a".repeat(256);
        assert!(check_name(&long).is_err());
        assert!(is_anonymous_name(&"ab".repeat(32)) && !is_anonymous_name("data"));
    }
}
