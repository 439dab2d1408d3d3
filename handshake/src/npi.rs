//! The National Provider Identifier check digit: Luhn over the NPI's first nine digits prefixed
//! with the health-industry card prefix 80840.

/// Whether `npi` is ten ASCII digits whose last is the Luhn check digit of `80840` + the first nine.
pub fn is_valid(npi: &str) -> bool {
    let bytes = npi.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let digits = b"80840"
        .iter()
        .chain(&bytes[..9])
        .map(|byte| u32::from(byte - b'0'));
    // Luhn: from the rightmost payload digit, double every other digit starting with that one.
    let payload: Vec<u32> = digits.collect();
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(index, digit)| {
            if index % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                *digit
            }
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    check == u32::from(bytes[9] - b'0')
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn known_npis_pass_and_altered_ones_fail() {
        for npi in ["1234567893", "1245319599", "1003000126"] {
            assert!(is_valid(npi), "{npi}");
        }
        for npi in [
            "1234567890",
            "1245319598",
            "123456789",
            "12345678931",
            "12345678a3",
            "",
            "１234567893",
        ] {
            assert!(!is_valid(npi), "{npi}");
        }
    }
}
