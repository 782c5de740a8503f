//! The Nexmark event generator (persons, auctions, bids of an online auction), ported
//! from the nexmark-flink generator draw for draw. Event `n` comes from a
//! `SplittableRandom(n)` of its own, so any subtask can produce any event and a source
//! resumes from an event number; the first event is number 0, its date_time
//! 2015-07-15T00:00:00Z, and event time advances by `1000 / event_rate` ms per event.
//!
//! Events are written as JSON lines in the Nexmark file format: one object per line
//! with one key, the kind (`person`, `auction`, `bid`), holding the fields in
//! snake_case.

use std::io::Write;
use std::sync::OnceLock;

mod random;

pub use random::SplitMix64;

/// date_time of event 0: 2015-07-15T00:00:00Z.
pub const BASE_TIME_MS: i64 = 1_436_918_400_000;
/// Events per second of event time, by default.
pub const DEFAULT_EVENT_RATE: f64 = 10_000.0;

const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: i32 = 5;
/// Out of every 50 events: 1 person, 3 auctions, 46 bids.
const PERSON_PROPORTION: i64 = 1;
const AUCTION_PROPORTION: i64 = 3;
const TOTAL_PROPORTION: i64 = 50;
const NUM_ACTIVE_PEOPLE: i64 = 1000;
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
const PERSON_ID_LEAD: i64 = 10;
const AUCTION_ID_LEAD: i64 = 10;
const HOT_AUCTION_RATIO: i32 = 2;
const HOT_SELLERS_RATIO: i32 = 4;
const HOT_BIDDERS_RATIO: i32 = 4;
const HOT_RATIO_ID: i64 = 100;
const AVG_PERSON_BYTES: i32 = 200;
const AVG_AUCTION_BYTES: i32 = 500;
const AVG_BID_BYTES: i32 = 100;
const CHANNELS: i32 = 10_000;
const REUSABLE_EXTRA_LEN: i32 = 1 << 20;

const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// The generator of one event timeline.
#[derive(Clone, Copy, Debug)]
pub struct Nexmark {
    /// Microseconds of event time between two events.
    delay_us: f64,
}

impl Nexmark {
    /// A timeline of `event_rate` events per second of event time.
    pub fn new(event_rate: f64) -> Self {
        Nexmark {
            delay_us: 1_000_000.0 / event_rate,
        }
    }

    /// The date_time of event `n`.
    pub fn timestamp(&self, n: i64) -> i64 {
        BASE_TIME_MS + (n as f64 * self.delay_us) as i64 / 1000
    }

    /// Appends event `n` as one JSON object (no newline) and returns its date_time.
    pub fn write_event(&self, n: u64, out: &mut Vec<u8>) -> i64 {
        let n = n as i64;
        let mut rng = SplitMix64::new(n as u64);
        let t = self.timestamp(n);
        let rem = n % TOTAL_PROPORTION;
        if rem < PERSON_PROPORTION {
            person(n, &mut rng, t, out);
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            self.auction(n, &mut rng, t, out);
        } else {
            bid(n, &mut rng, t, out);
        }
        t
    }

    fn auction(&self, n: i64, rng: &mut SplitMix64, t: i64, out: &mut Vec<u8>) {
        let id = last_base0_auction_id(n) + FIRST_AUCTION_ID;
        let seller = if rng.next_i32_below(HOT_SELLERS_RATIO) > 0 {
            (last_base0_person_id(n) / HOT_RATIO_ID) * HOT_RATIO_ID
        } else {
            next_base0_person_id(n, rng)
        } + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + i64::from(rng.next_i32_below(NUM_CATEGORIES));
        let initial_bid = next_price(rng);
        // How long until this many auctions have been opened after this one.
        let ahead = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
        let horizon = self.timestamp(n + ahead) - t;
        let expires = t + 1 + next_long(rng, (horizon * 2).max(1));
        let item_name = next_string(rng, 20, b' ');
        let description = next_string(rng, 100, b' ');
        let reserve = initial_bid + next_price(rng);
        let size = 8 + item_name.len() + description.len() + 40;
        let _ = write!(
            out,
            r#"{{"auction":{{"id":{id},"item_name":"{}","description":"{}","initial_bid":{initial_bid},"reserve":{reserve},"date_time":{t},"expires":{expires},"seller":{seller},"category":{category},"extra":""#,
            item_name, description
        );
        next_extra(rng, size as i32, AVG_AUCTION_BYTES, out);
        out.extend_from_slice(b"\"}}");
    }
}

fn person(n: i64, rng: &mut SplitMix64, t: i64, out: &mut Vec<u8>) {
    let id = last_base0_person_id(n) + FIRST_PERSON_ID;
    let first = FIRST_NAMES[rng.next_i32_below(FIRST_NAMES.len() as i32) as usize];
    let last = LAST_NAMES[rng.next_i32_below(LAST_NAMES.len() as i32) as usize];
    let user = next_string(rng, 7, b' ');
    let domain = next_string(rng, 5, b' ');
    let card: Vec<String> = (0..4)
        .map(|_| format!("{:04}", rng.next_i32_below(10_000)))
        .collect();
    let card = card.join(" ");
    let city = CITIES[rng.next_i32_below(CITIES.len() as i32) as usize];
    let state = STATES[rng.next_i32_below(STATES.len() as i32) as usize];
    let name_len = first.len() + 1 + last.len();
    let email_len = user.len() + 1 + domain.len() + 4;
    let size = 8 + name_len + email_len + card.len() + city.len() + state.len();
    let _ = write!(
        out,
        r#"{{"person":{{"id":{id},"name":"{first} {last}","email_address":"{user}@{domain}.com","credit_card":"{card}","city":"{city}","state":"{state}","date_time":{t},"extra":""#
    );
    next_extra(rng, size as i32, AVG_PERSON_BYTES, out);
    out.extend_from_slice(b"\"}}");
}

fn bid(n: i64, rng: &mut SplitMix64, t: i64, out: &mut Vec<u8>) {
    let auction = if rng.next_i32_below(HOT_AUCTION_RATIO) > 0 {
        (last_base0_auction_id(n) / HOT_RATIO_ID) * HOT_RATIO_ID
    } else {
        next_base0_auction_id(n, rng)
    } + FIRST_AUCTION_ID;
    let bidder = if rng.next_i32_below(HOT_BIDDERS_RATIO) > 0 {
        (last_base0_person_id(n) / HOT_RATIO_ID) * HOT_RATIO_ID + 1
    } else {
        next_base0_person_id(n, rng)
    } + FIRST_PERSON_ID;
    let price = next_price(rng);
    let tables = tables();
    let (channel, url) = if rng.next_i32_below(2) > 0 {
        let i = rng.next_i32_below(HOT_CHANNELS.len() as i32) as usize;
        (HOT_CHANNELS[i].to_owned(), tables.hot_urls[i].as_str())
    } else {
        let c = rng.next_i32_below(CHANNELS);
        (
            format!("channel-{c}"),
            tables.channel_urls[c as usize].as_str(),
        )
    };
    // The reference generator adds the first person id a second time.
    let bidder = bidder + FIRST_PERSON_ID;
    let _ = write!(
        out,
        r#"{{"bid":{{"auction":{auction},"bidder":{bidder},"price":{price},"channel":"{channel}","url":"{url}","date_time":{t},"extra":""#
    );
    next_extra(rng, 32, AVG_BID_BYTES, out);
    out.extend_from_slice(b"\"}}");
}

/// The last person id (from 0) created by event `n`.
fn last_base0_person_id(n: i64) -> i64 {
    let epoch = n / TOTAL_PROPORTION;
    let offset = (n % TOTAL_PROPORTION).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// The last auction id (from 0) created by event `n`.
fn last_base0_auction_id(n: i64) -> i64 {
    let mut epoch = n / TOTAL_PROPORTION;
    let mut offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// A person among the active ones (and a few not yet created).
fn next_base0_person_id(n: i64, rng: &mut SplitMix64) -> i64 {
    let people = last_base0_person_id(n) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + next_long(rng, active + PERSON_ID_LEAD)
}

/// An auction among the in-flight ones (and a few not yet created).
fn next_base0_auction_id(n: i64, rng: &mut SplitMix64) -> i64 {
    let max = last_base0_auction_id(n);
    let min = (max - NUM_IN_FLIGHT_AUCTIONS).max(0);
    min + next_long(rng, max - min + 1 + AUCTION_ID_LEAD)
}

/// nexmark's `LongGenerator.nextLong`: an int draw when the bound fits one.
fn next_long(rng: &mut SplitMix64, n: i64) -> i64 {
    if n < i64::from(i32::MAX) {
        i64::from(rng.next_i32_below(n as i32))
    } else {
        ((rng.next_u64() as i64) % n).abs()
    }
}

/// A price in cents, log-uniform between $1 and $1,000,000.
fn next_price(rng: &mut SplitMix64) -> i64 {
    // Java's Math.round: floor(x + 0.5).
    (10f64.powf(rng.next_f64() * 6.0) * 100.0 + 0.5).floor() as i64
}

/// 3 to `max_len - 1` characters from `a..z` and `special`, trimmed of spaces.
fn next_string(rng: &mut SplitMix64, max_len: i32, special: u8) -> String {
    let len = 3 + rng.next_i32_below(max_len - 3);
    let mut s = Vec::with_capacity(len as usize);
    for _ in 0..len {
        if rng.next_i32_below(13) == 0 {
            s.push(special);
        } else {
            s.push(b'a' + rng.next_i32_below(26) as u8);
        }
    }
    let text = String::from_utf8_lossy(&s);
    text.trim_matches(' ').to_owned()
}

/// `len` characters from `H..z`, drawn six from each random int (the fallback that
/// also builds the reusable extra string).
fn exact_string_drawn(rng: &mut SplitMix64, len: i32, out: &mut Vec<u8>) {
    let (mut rnd, mut left) = (0i32, 0);
    for _ in 0..len {
        if left == 0 {
            rnd = rng.next_i32();
            left = 6;
        }
        out.push((i32::from(b'a') + rnd % 26) as u8);
        rnd /= 26;
        left -= 1;
    }
}

/// Padding that brings a record of `size` bytes to about `avg` bytes, as JSON string
/// content (its characters include `\`, escaped here).
fn next_extra(rng: &mut SplitMix64, size: i32, avg: i32, out: &mut Vec<u8>) {
    if size > avg {
        return;
    }
    let d = avg - size;
    let delta = (f64::from(d) * 0.2 + 0.5).floor() as i32;
    let len = d - delta
        + if delta == 0 {
            0
        } else {
            rng.next_i32_below(2 * delta)
        };
    let text: &[u8] = if len < REUSABLE_EXTRA_LEN / 2 {
        let extra = &tables().extra;
        let off = rng.next_i32_below(REUSABLE_EXTRA_LEN - len) as usize;
        &extra[off..off + len as usize]
    } else {
        let mut drawn = Vec::with_capacity(len as usize);
        exact_string_drawn(rng, len, &mut drawn);
        return escape_into(&drawn, out);
    };
    escape_into(text, out);
}

fn escape_into(mut text: &[u8], out: &mut Vec<u8>) {
    while let Some(i) = memchr::memchr2(b'\\', b'"', text) {
        out.extend_from_slice(&text[..i]);
        out.extend_from_slice(&[b'\\', text[i]]);
        text = &text[i + 1..];
    }
    out.extend_from_slice(text);
}

/// Tables the reference generator builds once from fixed seeds.
struct Tables {
    /// One MiB of padding characters (`SplittableRandom(2)`).
    extra: Vec<u8>,
    /// URLs of the hot channels, then of channels `channel-0..9999` (drawn in that
    /// order from another `SplittableRandom(1)`).
    hot_urls: Vec<String>,
    channel_urls: Vec<String>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut extra = Vec::with_capacity(REUSABLE_EXTRA_LEN as usize);
        exact_string_drawn(&mut SplitMix64::new(2), REUSABLE_EXTRA_LEN, &mut extra);
        let mut rng = SplitMix64::new(1);
        let base_url = |rng: &mut SplitMix64| {
            let parts: Vec<String> = (0..3).map(|_| next_string(rng, 5, b'_')).collect();
            format!(
                "https://www.nexmark.com/{}/item.htm?query=1",
                parts.join("/")
            )
        };
        let hot_urls = (0..HOT_CHANNELS.len())
            .map(|_| base_url(&mut rng))
            .collect();
        let channel_urls = (0..CHANNELS)
            .map(|i| {
                let mut url = base_url(&mut rng);
                if rng.next_i32_below(10) > 0 {
                    url.push_str(&format!("&channel_id={}", i.reverse_bits().wrapping_abs()));
                }
                url
            })
            .collect();
        Tables {
            extra,
            hot_urls,
            channel_urls,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> serde_json::Value {
        let mut out = Vec::new();
        Nexmark::new(DEFAULT_EVENT_RATE).write_event(n, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn events_match_the_reference_generator() {
        // Expected values from the reference generator (JDK 17, per-event seeding).
        let p = &event(0)["person"];
        assert_eq!(p["id"], 1000);
        assert_eq!(p["name"], "John Bartels");
        assert_eq!(p["email_address"], "nbed e@g s.com");
        assert_eq!(p["credit_card"], "7924 2715 1843 8834");
        assert_eq!(
            (&p["city"], &p["state"]),
            (&"San Francisco".into(), &"WY".into())
        );
        assert_eq!(p["date_time"], BASE_TIME_MS);
        assert_eq!(p["extra"].as_str().unwrap().len(), 125);
        let a = &event(1)["auction"];
        assert_eq!(
            (&a["id"], &a["seller"], &a["category"]),
            (&1000.into(), &1000.into(), &12.into())
        );
        assert_eq!(a["initial_bid"], 66991009);
        assert_eq!(a["expires"], BASE_TIME_MS + 218);
        assert_eq!(a["item_name"], "c kegevgra");
        assert_eq!(a["description"], "vzwlzueyi kceyyieoqrfa");
        assert_eq!(a["reserve"], 67248490);
        assert_eq!(a["extra"].as_str().unwrap().len(), 374);
        let a = &event(2)["auction"];
        assert_eq!(
            (&a["id"], &a["seller"], &a["category"]),
            (&1001.into(), &1004.into(), &11.into())
        );
        assert_eq!(
            (&a["initial_bid"], &a["reserve"]),
            (&3913046.into(), &3920185.into())
        );
        assert_eq!(a["expires"], BASE_TIME_MS + 55);
        let b = &event(4)["bid"];
        assert_eq!(
            (&b["auction"], &b["bidder"], &b["price"]),
            (&1000.into(), &2001.into(), &89258.into())
        );
        assert_eq!(b["channel"], "channel-5594");
        assert_eq!(
            b["url"],
            "https://www.nexmark.com/my_/lqna/lltj/item.htm?query=1&channel_id=1537736704"
        );
        assert!(b["extra"].as_str().unwrap().starts_with("nidl]KJ^Z"), "{b}");
        assert_eq!(b["extra"].as_str().unwrap().len(), 67);
        let b = &event(5)["bid"];
        assert_eq!(
            (&b["auction"], &b["bidder"], &b["price"]),
            (&1012.into(), &2001.into(), &394.into())
        );
        assert_eq!(b["channel"], "Facebook");
        let p = &event(50)["person"];
        assert_eq!(
            (&p["id"], &p["name"]),
            (&1001.into(), &"Peter Jones".into())
        );
        assert_eq!(p["date_time"], BASE_TIME_MS + 5);
        let b = &event(123456)["bid"];
        assert_eq!(
            (&b["auction"], &b["bidder"], &b["price"]),
            (&8382.into(), &4401.into(), &2182607.into())
        );
        assert_eq!(
            (&b["channel"], &b["date_time"]),
            (&"Baidu".into(), &1436918412345i64.into())
        );
    }

    #[test]
    fn kinds_follow_the_event_number_and_time_the_rate() {
        let kinds: Vec<String> = (0..50)
            .map(|n| event(n).as_object().unwrap().keys().next().unwrap().clone())
            .collect();
        assert_eq!(kinds[0], "person");
        assert!(kinds[1..4].iter().all(|k| k == "auction"));
        assert!(kinds[4..].iter().all(|k| k == "bid"));
        let slow = Nexmark::new(1000.0);
        assert_eq!(slow.timestamp(25), BASE_TIME_MS + 25);
    }
}
