//! Checks on what a customer sends with an order, done before anything is logged: a refused
//! order leaves nothing behind.

use super::model::Address;
use crate::platform::Rejection;
use crate::platform::card::CardNumber;
use crate::platform::error::RejectionKind;
use serde::Deserialize;
use utoipa::ToSchema;

pub const MAX_QUANTITY: u32 = 1000;
const MAX_ADDRESS_FIELD_BYTES: usize = 200;

/// ISO 3166-1 alpha-2, the officially assigned codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI \
BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ \
GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS \
MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT \
PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF \
TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// The address as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

pub fn address(input: &AddressInput) -> Result<Address, Rejection> {
    let field = |name: &str, value: &str| -> Result<String, Rejection> {
        let value = value.trim();
        if value.is_empty() || value.len() > MAX_ADDRESS_FIELD_BYTES {
            return Err(Rejection::invalid(
                &format!("shipping_address.{name}"),
                format!("{name} has 1 to {MAX_ADDRESS_FIELD_BYTES} bytes"),
            ));
        }
        Ok(value.to_string())
    };
    let country = input.country.trim().to_ascii_uppercase();
    let known = country.len() == 2
        && country.bytes().all(|byte| byte.is_ascii_uppercase())
        && COUNTRIES
            .split_ascii_whitespace()
            .any(|code| code == country);
    if !known {
        return Err(Rejection::invalid(
            "shipping_address.country",
            "country is an ISO 3166-1 alpha-2 code such as US or DE",
        ));
    }
    Ok(Address {
        name: field("name", &input.name)?,
        line1: field("line1", &input.line1)?,
        city: field("city", &input.city)?,
        postal_code: field("postal_code", &input.postal_code)?,
        country,
    })
}

/// A card number: 12 to 19 digits (spaces allowed between groups) passing the Luhn check.
/// It lives in memory only until the provider has tokenized it.
pub fn card_number(text: &str) -> Result<CardNumber, Rejection> {
    CardNumber::parse(text).map_err(|error| Rejection {
        kind: RejectionKind::Invalid,
        code: "invalid_card".to_string(),
        message: error.to_string(),
        field: Some("payment.card_number".to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn address_input(country: &str, city: &str) -> AddressInput {
        AddressInput {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: city.into(),
            postal_code: "12345".into(),
            country: country.into(),
        }
    }

    #[test]
    fn the_test_cards_pass_and_bad_numbers_fail() {
        for card in ["4242424242424242", "4000000000000002", "4000000000009995"] {
            assert_eq!(card_number(card).unwrap().digits(), card);
        }
        assert_eq!(
            card_number("4242 4242 4242 4242").unwrap().digits(),
            "4242424242424242"
        );
        for bad in [
            "4242424242424241",
            "12345",
            "4242-4242-4242-4242",
            "",
            "abcd",
        ] {
            let error = card_number(bad).unwrap_err();
            assert_eq!(error.code, "invalid_card", "{bad}");
            assert_eq!(error.field.as_deref(), Some("payment.card_number"));
        }
        assert!(card_number("42424242424242424242").is_err(), "20 digits");
    }

    #[test]
    fn addresses_need_every_field_and_a_real_country() {
        let good = address(&address_input("de", " Berlin ")).unwrap();
        assert_eq!(good.country, "DE");
        assert_eq!(good.city, "Berlin");
        for (country, field) in [("XX", "country"), ("USA", "country"), ("", "country")] {
            let error = address(&address_input(country, "Paris")).unwrap_err();
            assert_eq!(
                error.field.as_deref(),
                Some("shipping_address.country"),
                "{field}"
            );
        }
        let error = address(&address_input("FR", "  ")).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("shipping_address.city"));
        let error = address(&address_input("FR", &"x".repeat(201))).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("shipping_address.city"));
    }
}
