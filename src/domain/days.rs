use super::Invalid;

/// A whole number of days for a setting, from 1 to a maximum the setting names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Days(u32);

impl Days {
    pub fn parse(raw: i32, what: &str, max: u32) -> Result<Self, Invalid> {
        match u32::try_from(raw) {
            Ok(days) if (1..=max).contains(&days) => Ok(Self(days)),
            _ => Err(Invalid(format!("{what} is a whole number of days from 1 to {max}"))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Days;

    #[test]
    fn days_are_between_one_and_the_maximum() {
        assert_eq!(Days::parse(1, "x", 10).map(Days::get), Ok(1));
        assert_eq!(Days::parse(10, "x", 10).map(Days::get), Ok(10));
        for bad in [0, -1, 11, i32::MIN] {
            assert!(Days::parse(bad, "renewalPeriodDays", 10).is_err(), "{bad} should be refused");
        }
        let error = Days::parse(0, "renewalPeriodDays", 730).expect_err("zero");
        assert_eq!(error.0, "renewalPeriodDays is a whole number of days from 1 to 730");
    }
}
