//! The payload of a write's announcement (a PostgreSQL notification):
//! which writer, its sequence number, what to drop, and whether Redis is to
//! be distrusted.

/// A notification's payload must stay under 8000 bytes: an announcement of
/// more items than fit says "everything".
const MAX_PAYLOAD: usize = 7000;

/// What a write invalidates: every listing, and these items (`None`:
/// everything, the admin flush or too many to name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub items: Option<Vec<i64>>,
    /// The writer could not delete something in Redis: nobody may fill
    /// from it or serve its copies until it has been flushed.
    pub redis_distrusted: bool,
}

/// A write as notified: `writer|seq|ids|flags` (`*` for everything, `r` in
/// the flags when Redis is to be distrusted).
pub(super) struct Message<'a> {
    pub writer: &'a str,
    pub seq: u64,
    pub announced: Announced,
}

impl<'a> Message<'a> {
    pub fn encode(writer: &str, seq: u64, announced: &Announced) -> String {
        let flags = if announced.redis_distrusted { "r" } else { "" };
        let everything = format!("{writer}|{seq}|*|{flags}");
        let Some(ids) = &announced.items else {
            return everything;
        };
        let mut text = format!("{writer}|{seq}|");
        for (n, id) in ids.iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            text.push_str(itoa::Buffer::new().format(*id));
            if text.len() > MAX_PAYLOAD {
                return everything;
            }
        }
        text.push('|');
        text.push_str(flags);
        text
    }

    pub fn decode(text: &'a str) -> Option<Self> {
        let mut parts = text.splitn(4, '|');
        let writer = parts.next()?;
        let seq = parts.next()?.parse().ok()?;
        let items = match parts.next()? {
            "*" => None,
            "" => Some(Vec::new()),
            ids => Some(
                ids.split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
            ),
        };
        let redis_distrusted = parts.next()?.contains('r');
        Some(Self {
            writer,
            seq,
            announced: Announced {
                items,
                redis_distrusted,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let items = |ids: Option<Vec<i64>>, redis_distrusted| Announced {
            items: ids,
            redis_distrusted,
        };
        let text = Message::encode("abc", 7, &items(Some(vec![1, 22, 333]), false));
        let message = Message::decode(&text).unwrap();
        assert_eq!((message.writer, message.seq), ("abc", 7));
        assert_eq!(message.announced, items(Some(vec![1, 22, 333]), false));
        let create = Message::encode("abc", 8, &items(Some(vec![]), true));
        assert_eq!(
            Message::decode(&create).unwrap().announced,
            items(Some(vec![]), true)
        );
        let flush = Message::encode("abc", 9, &items(None, false));
        assert_eq!(Message::decode(&flush).unwrap().announced.items, None);
        assert!(Message::decode("abc|x|1|").is_none());
        assert!(Message::decode("abc|1|1,x|").is_none());
    }

    #[test]
    fn an_announcement_of_too_many_items_says_everything() {
        let many = Announced {
            items: Some((1_000_000_000..1_000_002_000).collect()),
            redis_distrusted: true,
        };
        let text = Message::encode("abc", 1, &many);
        assert!(text.len() < MAX_PAYLOAD);
        assert_eq!(
            Message::decode(&text).unwrap().announced,
            Announced {
                items: None,
                redis_distrusted: true
            }
        );
    }
}
