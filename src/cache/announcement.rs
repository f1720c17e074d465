//! The payload of a write's announcement (a PostgreSQL notification):
//! which writer, its sequence number, what to drop, whether Redis is to be
//! distrusted, and the WAL position of its commit (read replicas).

/// A notification's payload must stay under 8000 bytes: an announcement of
/// more items than fit says "everything".
const MAX_PAYLOAD: usize = 7000;

/// What a write invalidates: every listing, and these items (`None`:
/// everything, the admin flush or too many to name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub items: Option<Vec<i64>>,
    /// `false`: a write no cache holds (a signup); only its position counts.
    pub invalidates: bool,
    /// The writer could not delete something in Redis: nobody may fill
    /// from it or serve its copies until it has been flushed.
    pub redis_distrusted: bool,
    /// A WAL position at or past the write's commit (0 without replicas):
    /// no instance reads a replica that has not replayed it.
    pub position: u64,
}

impl Announced {
    /// One announcement standing for both: everything either invalidates,
    /// Redis distrusted if either says so, the later commit position.
    pub fn merge(&mut self, other: &Announced) {
        self.items = match (self.items.take(), &other.items) {
            (Some(mut mine), Some(theirs)) => {
                mine.extend_from_slice(theirs);
                mine.sort_unstable();
                mine.dedup();
                Some(mine)
            }
            _ => None,
        };
        self.invalidates |= other.invalidates;
        self.redis_distrusted |= other.redis_distrusted;
        self.position = self.position.max(other.position);
    }
}

/// Writes waiting to be announced, each told how its announcement settled;
/// `sending` while a task sends them.
#[derive(Default)]
pub(super) struct Queued {
    pub waiting: Vec<(
        Announced,
        tokio::sync::oneshot::Sender<super::coherence::Settled>,
    )>,
    pub sending: bool,
}

/// A write as notified: `writer|seq|ids|flags|position` (`*` for
/// everything; in the flags, `r` when Redis is to be distrusted, `p` when
/// only the position counts).
pub(super) struct Message<'a> {
    pub writer: &'a str,
    pub seq: u64,
    pub announced: Announced,
}

impl<'a> Message<'a> {
    pub fn encode(writer: &str, seq: u64, announced: &Announced) -> String {
        let flags = match (announced.redis_distrusted, announced.invalidates) {
            (true, true) => "r",
            (true, false) => "rp",
            (false, true) => "",
            (false, false) => "p",
        };
        let position = announced.position;
        let everything = format!("{writer}|{seq}|*|{flags}|{position}");
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
        text.push('|');
        text.push_str(itoa::Buffer::new().format(position));
        text
    }

    pub fn decode(text: &'a str) -> Option<Self> {
        let mut parts = text.splitn(5, '|');
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
        let flags = parts.next()?;
        let position = match parts.next() {
            Some(position) => position.parse().ok()?,
            None => 0,
        };
        Some(Self {
            writer,
            seq,
            announced: Announced {
                items,
                invalidates: !flags.contains('p'),
                redis_distrusted: flags.contains('r'),
                position,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_announcements_invalidate_what_either_did_up_to_the_later_position() {
        let announced =
            |items: Option<Vec<i64>>, invalidates, redis_distrusted, position| Announced {
                items,
                invalidates,
                redis_distrusted,
                position,
            };
        let mut merged = announced(Some(vec![5, 3]), true, false, 40);
        merged.merge(&announced(Some(vec![3, 9]), true, false, 20));
        assert_eq!(merged, announced(Some(vec![3, 5, 9]), true, false, 40));

        // A signup's position-only announcement adds no item and drops nothing.
        let mut merged = announced(Some(Vec::new()), false, false, 10);
        merged.merge(&announced(Some(vec![7]), true, true, 30));
        assert_eq!(merged, announced(Some(vec![7]), true, true, 30));
        let mut merged = announced(Some(Vec::new()), false, false, 50);
        merged.merge(&announced(Some(Vec::new()), false, false, 30));
        assert_eq!(merged, announced(Some(Vec::new()), false, false, 50));

        // Everything stays everything, whichever side says it.
        let mut merged = announced(Some(vec![1]), true, false, 0);
        merged.merge(&announced(None, true, false, 0));
        assert_eq!(merged, announced(None, true, false, 0));
        let mut merged = announced(None, true, false, 0);
        merged.merge(&announced(Some(vec![1]), true, false, 0));
        assert_eq!(merged, announced(None, true, false, 0));
    }

    #[test]
    fn messages_round_trip() {
        let items = |ids: Option<Vec<i64>>, redis_distrusted| Announced {
            items: ids,
            invalidates: true,
            redis_distrusted,
            position: 0,
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
        let signup = Announced {
            items: Some(vec![]),
            invalidates: false,
            redis_distrusted: false,
            position: 123_456_789,
        };
        let text = Message::encode("abc", 10, &signup);
        assert_eq!(Message::decode(&text).unwrap().announced, signup);
        assert!(Message::decode("abc|x|1|").is_none());
        assert!(Message::decode("abc|1|1||x").is_none());
        assert!(Message::decode("abc|1|1,x|").is_none());
    }

    #[test]
    fn an_announcement_of_too_many_items_says_everything() {
        let many = Announced {
            items: Some((1_000_000_000..1_000_002_000).collect()),
            invalidates: true,
            redis_distrusted: true,
            position: 42,
        };
        let text = Message::encode("abc", 1, &many);
        assert!(text.len() < MAX_PAYLOAD);
        assert_eq!(
            Message::decode(&text).unwrap().announced,
            Announced {
                items: None,
                invalidates: true,
                redis_distrusted: true,
                position: 42,
            }
        );
    }
}
