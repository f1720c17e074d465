//! `?limit=` and opaque keyset `?cursor=` (§4).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use chrono::DateTime;

use super::validation::Rule;
use crate::db::contents::After;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// Parses an integer query parameter within `min..=max`.
pub fn bounded(raw: Option<&str>, default: i64, min: i64, max: i64) -> Result<i64, Rule> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.trim().parse::<i64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(Rule::new(
            "range",
            format!("ensure this value is an integer from {min} to {max}"),
        )),
    }
}

fn invalid_cursor() -> Rule {
    Rule::new(
        "cursor",
        "cursor is not valid; use the one from the Link header",
    )
}

/// Cursor over a list ordered by id: encodes the last id seen.
pub fn encode_id_cursor(last_id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("id:{last_id}"))
}

pub fn decode_id_cursor(raw: &str) -> Result<i64, Rule> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw.trim())
        .map_err(|_| invalid_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid_cursor())?;
    text.strip_prefix("id:")
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(invalid_cursor)
}

/// Cursor over content listings: where the previous page ended, in the
/// listing's own order (time, or rank for a search).
pub fn encode_content_cursor(after: After) -> String {
    let text = match after {
        After::Time(at, id) => format!("t:{}:{id}", at.timestamp_micros()),
        After::Rank(rank, id) => format!("r:{:08x}:{id}", rank.to_bits()),
    };
    URL_SAFE_NO_PAD.encode(text)
}

pub fn decode_content_cursor(raw: &str) -> Result<After, Rule> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw.trim())
        .map_err(|_| invalid_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid_cursor())?;
    let mut parts = text.splitn(3, ':');
    let (Some(kind), Some(position), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid_cursor());
    };
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(invalid_cursor)?;
    match kind {
        "t" => position
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .map(|at| After::Time(at, id))
            .ok_or_else(invalid_cursor),
        "r" => u32::from_str_radix(position, 16)
            .ok()
            .map(f32::from_bits)
            .filter(|rank| rank.is_finite())
            .map(|rank| After::Rank(rank, id))
            .ok_or_else(invalid_cursor),
        _ => Err(invalid_cursor()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_cursors_round_trip_exactly() {
        let at = DateTime::from_timestamp_micros(1_795_311_370_478_880).unwrap();
        for after in [After::Time(at, 9), After::Rank(0.0607927, 12)] {
            assert_eq!(
                decode_content_cursor(&encode_content_cursor(after)).unwrap(),
                after
            );
        }
        for bad in ["", "dDox", "eDoxOjE", "dDp4OjE", "cjp6ejox"] {
            assert!(decode_content_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(bounded(None, 20, 1, 100).unwrap(), 20);
        assert_eq!(bounded(Some("100"), 20, 1, 100).unwrap(), 100);
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(bounded(Some(bad), 20, 1, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn id_cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_id_cursor(&encode_id_cursor(42)).unwrap(), 42);
        for bad in ["", "!!", "aWQ6", "aWQ6LTE", "eHg6MQ"] {
            assert!(decode_id_cursor(bad).is_err(), "{bad}");
        }
    }
}
