use super::{has_control_chars, Invalid};

/// The label of an internal key: trimmed, at most 200 characters, no control characters. Set only at
/// creation. A blank label means "use the key value", which the caller supplies once it has the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLabel(String);

impl KeyLabel {
    pub const MAX_CHARS: usize = 200;

    /// `Ok(None)` when the label is absent or blank.
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, Invalid> {
        let Some(label) = raw.map(str::trim).filter(|l| !l.is_empty()) else {
            return Ok(None);
        };
        if label.chars().count() > Self::MAX_CHARS {
            return Err(Invalid(format!("a label is at most {} characters", Self::MAX_CHARS)));
        }
        if has_control_chars(label) {
            return Err(Invalid("a label cannot contain control characters".into()));
        }
        Ok(Some(Self(label.to_owned())))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::KeyLabel;

    #[test]
    fn a_label_is_trimmed() {
        assert_eq!(KeyLabel::parse(Some("  ERP sync ")), Ok(Some(KeyLabel("ERP sync".into()))));
    }

    #[test]
    fn a_blank_or_missing_label_is_none() {
        assert_eq!(KeyLabel::parse(Some("   ")), Ok(None));
        assert_eq!(KeyLabel::parse(None), Ok(None));
    }

    #[test]
    fn a_label_longer_than_200_chars_is_rejected() {
        assert!(KeyLabel::parse(Some(&"é".repeat(200))).is_ok());
        assert!(KeyLabel::parse(Some(&"é".repeat(201))).is_err());
    }

    #[test]
    fn a_label_with_control_characters_is_rejected() {
        assert!(KeyLabel::parse(Some("line\nbreak")).is_err());
        assert!(KeyLabel::parse(Some("nul\0")).is_err());
    }
}
