//! Which passwords an account may have: long enough, not blank, and not one an attacker
//! tries first. NIST SP 800-63B asks for exactly this (length and a blocklist of common or
//! compromised passwords) rather than composition rules.

use crate::platform::Rejection;

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 128;

/// The most used passwords of eight characters or more (from the public breach corpora's
/// top lists), compared without case. A short list on purpose: it stops the first guesses
/// of a spraying attack; per-account login throttling stops the rest.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password!",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "pa$$word",
    "12345678",
    "123456789",
    "1234567890",
    "0123456789",
    "12341234",
    "87654321",
    "11111111",
    "00000000",
    "88888888",
    "123123123",
    "123456789a",
    "qwertyui",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "qwer1234",
    "1234qwer",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "q1w2e3r4",
    "1qaz2wsx",
    "zaq12wsx",
    "qazwsxedc",
    "123qweasd",
    "asdfghjk",
    "asdfghjkl",
    "zxcvbnm1",
    "abcd1234",
    "abc12345",
    "abcdefgh",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "starwars",
    "trustno1",
    "whatever",
    "computer",
    "internet",
    "welcome1",
    "welcome123",
    "letmein1",
    "letmein123",
    "changeme",
    "changeme123",
    "admin123",
    "administrator",
    "secret123",
    "monkey123",
    "dragon123",
    "master123",
    "shadow123",
    "michelle",
    "jennifer",
    "jordan23",
    "liverpool",
    "chocolate",
    "butterfly",
    "pokemon1",
    "mustang1",
    "spiderman",
    "passwort",
    "motdepasse",
    "contraseña",
];

/// Checks a new password (registration, change). `field` names it in the answer.
pub fn check_password(field: &str, password: &str) -> Result<(), Rejection> {
    let length = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(Rejection::invalid(
            field,
            format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        ));
    }
    if password.trim().chars().count() < MIN_PASSWORD {
        return Err(Rejection::invalid(
            field,
            format!("a password has at least {MIN_PASSWORD} characters besides spaces"),
        ));
    }
    let mut chars = password.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err(Rejection::invalid(
            field,
            "a password is not one character repeated",
        ));
    }
    let lowered = password.to_lowercase();
    if COMMON.iter().any(|common| *common == lowered) {
        return Err(Rejection::invalid(
            field,
            "this password is among the most common ones; choose another",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_short_repeated_and_common_passwords_are_refused() {
        for refused in [
            "",
            "short",
            "        ",
            "  ab    ",
            "aaaaaaaaaa",
            "password",
            "Password",
            "PASSWORD123",
            "12345678",
            "qwertyuiop",
        ] {
            assert!(
                check_password("password", refused).is_err(),
                "{refused:?} was accepted"
            );
        }
    }

    #[test]
    fn ordinary_passwords_pass() {
        for accepted in [
            "correct horse",
            "long enough",
            "customer-password-2",
            "Tr0ub4dor&3",
        ] {
            assert!(
                check_password("password", accepted).is_ok(),
                "{accepted:?} was refused"
            );
        }
    }
}
