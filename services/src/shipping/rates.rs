//! Where a parcel can go and what it costs: the zone of a destination country and the rate
//! table. Pure functions, shared by the quote route and CreateShipment.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Shipments leave from the US.
pub const DOMESTIC: &str = "US";

/// Canada, the United Kingdom and the EU member states.
const ZONE_1: &[&str] = &[
    "CA", "GB", "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// Every officially assigned ISO 3166-1 alpha-2 code; those not domestic or zone 1 are zone 2.
const ISO_3166_ALPHA_2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL \
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ \
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR \
HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU \
LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU \
NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO \
SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU \
WF WS YE YT ZA ZM ZW";

/// The heaviest parcel the carrier takes.
pub const MAX_WEIGHT_GRAMS: u64 = 70_000;
/// Weight is charged in steps of this many grams (a started step counts).
pub const WEIGHT_STEP_GRAMS: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    Domestic,
    Zone1,
    Zone2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Standard,
    Express,
}

impl Method {
    pub fn parse(text: &str) -> Option<Method> {
        match text {
            "standard" => Some(Method::Standard),
            "express" => Some(Method::Express),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Standard => "standard",
            Method::Express => "express",
        }
    }
}

/// The zone of an ISO 3166-1 alpha-2 code (uppercase); None for a code not in the list.
pub fn zone_of(country: &str) -> Option<Zone> {
    if country == DOMESTIC {
        return Some(Zone::Domestic);
    }
    if ZONE_1.contains(&country) {
        return Some(Zone::Zone1);
    }
    ISO_3166_ALPHA_2
        .split_ascii_whitespace()
        .any(|code| code == country)
        .then_some(Zone::Zone2)
}

/// (first step, each further step) in US cents, by method and zone.
fn rate(method: Method, zone: Zone) -> (i64, i64) {
    match (method, zone) {
        (Method::Standard, Zone::Domestic) => (500, 100),
        (Method::Standard, Zone::Zone1) => (1_500, 300),
        (Method::Standard, Zone::Zone2) => (2_500, 500),
        (Method::Express, Zone::Domestic) => (1_500, 200),
        (Method::Express, Zone::Zone1) => (3_500, 600),
        (Method::Express, Zone::Zone2) => (5_500, 900),
    }
}

/// The cost in US cents of a parcel of `weight_grams` (a parcel weighs at least one step).
pub fn cost_cents(weight_grams: u64, zone: Zone, method: Method) -> i64 {
    let steps = weight_grams.div_ceil(WEIGHT_STEP_GRAMS).max(1);
    let (first, further) = rate(method, zone);
    let further_steps = i64::try_from(steps - 1).unwrap_or(i64::MAX);
    first.saturating_add(further.saturating_mul(further_steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_of_known_and_unknown_codes() {
        assert_eq!(zone_of("US"), Some(Zone::Domestic));
        for code in ["CA", "GB", "DE", "FR", "SE"] {
            assert_eq!(zone_of(code), Some(Zone::Zone1), "{code}");
        }
        for code in ["JP", "AU", "BR", "CH", "NO", "ZW"] {
            assert_eq!(zone_of(code), Some(Zone::Zone2), "{code}");
        }
        for code in ["XX", "ZZ", "us", "", "USA", "UK"] {
            assert_eq!(zone_of(code), None, "{code}");
        }
    }

    #[test]
    fn cost_table() {
        // (grams, zone, method, cents)
        let table = [
            (0, Zone::Domestic, Method::Standard, 500),
            (500, Zone::Domestic, Method::Standard, 500),
            (501, Zone::Domestic, Method::Standard, 600),
            (2_000, Zone::Domestic, Method::Express, 2_100),
            (1_200, Zone::Zone1, Method::Standard, 2_100),
            (1_200, Zone::Zone1, Method::Express, 4_700),
            (250, Zone::Zone2, Method::Standard, 2_500),
            (70_000, Zone::Zone2, Method::Express, 5_500 + 139 * 900),
        ];
        for (grams, zone, method, cents) in table {
            assert_eq!(
                cost_cents(grams, zone, method),
                cents,
                "{grams} g {zone:?} {method:?}"
            );
        }
    }

    #[test]
    fn express_always_costs_more_and_weight_never_costs_less() {
        for zone in [Zone::Domestic, Zone::Zone1, Zone::Zone2] {
            let mut last = 0;
            for grams in (0..=MAX_WEIGHT_GRAMS).step_by(250) {
                let standard = cost_cents(grams, zone, Method::Standard);
                assert!(cost_cents(grams, zone, Method::Express) > standard);
                assert!(standard >= last);
                last = standard;
            }
        }
    }
}
