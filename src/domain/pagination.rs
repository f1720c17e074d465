//! `?limit=` and keyset `?cursor=`. Cursors are opaque to clients but
//! plain to the server: every string of their published pattern
//! (`rules::CONTENT_CURSOR`, `rules::ID_CURSOR`) is a valid position, so a
//! schema-valid cursor is never refused.

use chrono::DateTime;

use serde_json::{Map, Value};

use super::rules;
use super::validation::{digits, Fields, Rule};
use super::AppError;
use crate::db::contents::After;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// `?limit=&cursor=` of a newest-first listing whose cursor is the last id
/// (or version) seen: the audit log, revisions, webhook deliveries.
pub struct BeforeQuery {
    pub before: Option<i64>,
    pub limit: i64,
}

impl BeforeQuery {
    pub fn parse(params: Map<String, Value>) -> Result<Self, AppError> {
        let mut fields = Fields::new(params);
        let limit = fields.optional("limit", |raw| bounded(&raw, 1, MAX_LIMIT));
        let before = fields.optional("cursor", |raw| decode_id_cursor(&raw));
        fields.finish()?;
        Ok(Self {
            before,
            limit: limit.unwrap_or(DEFAULT_LIMIT),
        })
    }
}

/// Parses an integer query parameter within `min..=max`.
pub fn bounded(raw: &str, min: i64, max: i64) -> Result<i64, Rule> {
    digits(raw)
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| {
            Rule::new(
                "range",
                format!("ensure this value is an integer from {min} to {max}"),
            )
        })
}

fn invalid_cursor() -> Rule {
    Rule::new(
        "cursor",
        "cursor is not valid; use the one from the Link header",
    )
}

/// Cursor over a list ordered by id: the last id seen.
pub fn encode_id_cursor(last_id: i64) -> String {
    last_id.to_string()
}

pub fn decode_id_cursor(raw: &str) -> Result<i64, Rule> {
    Some(raw)
        .filter(|raw| rules::ID_CURSOR.matches(raw))
        .and_then(digits)
        .ok_or_else(invalid_cursor)
}

/// The bits of the largest finite `f32`: a rank position beyond it means
/// "from the top".
const MAX_RANK_BITS: u64 = 0x7F7F_FFFF;

/// Cursor over content listings: where the previous page ended, in the
/// listing's own order (time, or rank for a search).
pub fn encode_content_cursor(after: After) -> String {
    match after {
        After::Time(at, id) => format!("{}.{id}", at.timestamp_micros().max(0)),
        After::Rank(rank, id) => format!("{}.{id}", rank.max(0.0).to_bits()),
    }
}

/// A cursor read as a position in the listing it is given to: a time in a
/// newest-first listing, a rank in a search.
pub fn decode_content_cursor(raw: &str, searching: bool) -> Result<After, Rule> {
    let (position, id) = Some(raw)
        .filter(|raw| rules::CONTENT_CURSOR.matches(raw))
        .and_then(|raw| raw.split_once('.'))
        .and_then(|(position, id)| Some((digits(position)?, digits(id)?)))
        .ok_or_else(invalid_cursor)?;
    if searching {
        let bits = (position as u64).min(MAX_RANK_BITS) as u32;
        Ok(After::Rank(f32::from_bits(bits), id))
    } else {
        DateTime::from_timestamp_micros(position)
            .map(|at| After::Time(at, id))
            .ok_or_else(invalid_cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_cursors_round_trip_exactly() {
        let at = DateTime::from_timestamp_micros(1_795_311_370_478_880).unwrap();
        let time = After::Time(at, 9);
        assert_eq!(
            decode_content_cursor(&encode_content_cursor(time), false).unwrap(),
            time
        );
        let rank = After::Rank(0.0607927, 12);
        assert_eq!(
            decode_content_cursor(&encode_content_cursor(rank), true).unwrap(),
            rank
        );
        for bad in [
            "",
            "dDox",
            "1",
            "1.0",
            "-1.1",
            "1.1.1",
            "99999999999999999.1",
        ] {
            assert!(decode_content_cursor(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_cursor_of_the_pattern_is_a_position_in_either_listing() {
        for raw in ["0.1", "9999999999999999.999999999999999999", "4294967296.5"] {
            assert!(decode_content_cursor(raw, false).is_ok(), "{raw}");
            let After::Rank(rank, _) = decode_content_cursor(raw, true).unwrap() else {
                panic!("a search cursor is a rank")
            };
            assert!(rank.is_finite() && rank >= 0.0, "{raw}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(bounded("100", 1, 100).unwrap(), 100);
        for bad in ["0", "101", "-1", "ten", "", " 5", "1e9"] {
            assert!(bounded(bad, 1, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn id_cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_id_cursor(&encode_id_cursor(42)).unwrap(), 42);
        for bad in ["", "!!", "0", "-1", "aWQ6MQ", "1234567890123456789"] {
            assert!(decode_id_cursor(bad).is_err(), "{bad}");
        }
    }
}
