//! Card data as the services may hold it.
//!
//! A full card number exists only in memory, between the request that carries it and the
//! payment provider's tokenization ([`CardNumber`]: no `Serialize`, a redacted `Debug`, so it
//! cannot reach a command, an event, a log line or a topic by accident). What flows on is a
//! [`CardPayment`]: the provider's token and the last four digits, as Stripe's and Adyen's
//! integrations keep them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A card number that passed the edge's checks: 12 to 19 ASCII digits with a valid Luhn
/// check digit. Never serialized, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

/// The text was not a card number (12 to 19 digits, spaces allowed between groups, passing
/// the Luhn check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a card number has 12 to 19 digits and passes the Luhn check")]
pub struct NotACardNumber;

impl CardNumber {
    /// Parses what a customer typed: the digits, with the spaces people put between groups.
    pub fn parse(text: &str) -> Result<CardNumber, NotACardNumber> {
        let digits: String = text.chars().filter(|c| *c != ' ').collect();
        let ok = (12..=19).contains(&digits.len())
            && digits.bytes().all(|byte| byte.is_ascii_digit())
            && luhn(&digits);
        if ok {
            Ok(CardNumber(digits))
        } else {
            Err(NotACardNumber)
        }
    }

    /// The digits; for the provider only (to decide and to fingerprint).
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The last four digits: what receipts and the API show.
    pub fn last4(&self) -> String {
        let start = self.0.len().saturating_sub(4);
        self.0.get(start..).unwrap_or_default().to_string()
    }

    /// The card network, from the number's leading digits (the public IIN ranges).
    pub fn brand(&self) -> CardBrand {
        let prefix =
            |len: usize| -> u32 { self.0.get(..len).and_then(|p| p.parse().ok()).unwrap_or(0) };
        match (prefix(1), prefix(2), prefix(4)) {
            (4, _, _) => CardBrand::Visa,
            (_, 34 | 37, _) => CardBrand::Amex,
            (_, 51..=55, _) | (_, _, 2221..=2720) => CardBrand::Mastercard,
            (_, 65, _) | (_, _, 6011) => CardBrand::Discover,
            _ => CardBrand::Unknown,
        }
    }
}

/// Never prints the number: only its last four digits.
impl std::fmt::Debug for CardNumber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "CardNumber(**** {})", self.last4())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardBrand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Unknown,
}

/// How an order pays: the provider's token for the card and the card's last four digits.
/// The only card data a command, an event or a topic ever carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardPayment {
    /// The provider's token (`tok_…`): what the payment service charges.
    pub token: String,
    pub card_last4: String,
}

/// The Luhn checksum over ASCII digits.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte.wrapping_sub(b'0'));
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_test_cards_parse_and_typos_do_not() {
        for card in ["4242424242424242", "4000000000000002", "4000000000009995"] {
            assert_eq!(CardNumber::parse(card).unwrap().digits(), card);
        }
        let spaced = CardNumber::parse("4242 4242 4242 4242").unwrap();
        assert_eq!(spaced.digits(), "4242424242424242");
        for bad in [
            "4242424242424241",
            "12345",
            "4242-4242-4242-4242",
            "",
            "abcd",
            "42424242424242424242",
        ] {
            assert_eq!(CardNumber::parse(bad), Err(NotACardNumber), "{bad}");
        }
    }

    #[test]
    fn a_card_number_shows_only_its_last_four_digits() {
        let card = CardNumber::parse("4000000000009995").unwrap();
        assert_eq!(card.last4(), "9995");
        assert_eq!(format!("{card:?}"), "CardNumber(**** 9995)");
        assert_eq!(card.brand(), CardBrand::Visa);
        assert_eq!(
            CardNumber::parse("5555555555554444").unwrap().brand(),
            CardBrand::Mastercard
        );
        assert_eq!(
            CardNumber::parse("378282246310005").unwrap().brand(),
            CardBrand::Amex
        );
    }
}
