//! The queries' stateful steps, one process function with a `query` param. All state is
//! the host's keyed state, so it is checkpointed and restored like any other.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use eddy_sdk::keyed::{self, ListState, MapState, ValueState};
use eddy_sdk::serde::de::DeserializeOwned;
use eddy_sdk::serde::{Deserialize, Serialize};
use eddy_sdk::{Context, Emitter, Error, Event, Process, TimeDomain, Timer};

use crate::rows::*;

/// Ten seconds, q7's and q8's tumbling window.
const WINDOW_MS: i64 = 10_000;

/// How long q4 keeps bids that came before their auction, which (by the generator's
/// id lead) is at most a few hundred events later.
const EARLY_BID_MS: i64 = 20_000;

/// The stateful step of a query (`params: { query: q3 | q4-max | q4-avg | q5-top | q7 | q8 }`).
pub struct Stateful(Step);

enum Step {
    Q3(Q3),
    Q4Max(Q4Max),
    Q4Avg(Q4Avg),
    Q5Top(Q5Top),
    Q7(Q7),
    Q8(Q8),
}

impl Process for Stateful {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let name: String = ctx.require("query")?;
        Ok(Stateful(match name.as_str() {
            "q3" => Step::Q3(Q3 {
                person: ValueState::new("person", None),
                pending: ListState::new("pending", None),
            }),
            "q4-max" => Step::Q4Max(Q4Max {
                auction: ValueState::new("auction", None),
                max: ValueState::new("max", None),
                early: ListState::new("early", None),
            }),
            "q4-avg" => Step::Q4Avg(Q4Avg {
                sum_count: ValueState::new("sum-count", None),
            }),
            "q5-top" => Step::Q5Top(Q5Top {
                best: ValueState::new("best", None),
            }),
            "q7" => Step::Q7(Q7 {
                windows: MapState::new("windows", None),
            }),
            "q8" => Step::Q8(Q8 {
                windows: MapState::new("windows", None),
            }),
            other => {
                return Err(Error::msg(format_args!(
                    "unknown query {other:?} (expected q3, q4-max, q4-avg, q5-top, q7 or q8)"
                )));
            }
        }))
    }

    fn process(
        &mut self,
        key: &[u8],
        events: &[Event<'_>],
        out: &mut Emitter<'_>,
    ) -> Result<(), Error> {
        match &mut self.0 {
            Step::Q3(s) => s.process(events, out),
            Step::Q4Max(s) => s.process(events),
            Step::Q4Avg(s) => s.process(events, out),
            Step::Q5Top(s) => s.process(events),
            Step::Q7(s) => s.process(events),
            Step::Q8(s) => s.process(key, events, out),
        }
    }

    fn on_timer(&mut self, _key: &[u8], timer: Timer, out: &mut Emitter<'_>) -> Result<(), Error> {
        match &mut self.0 {
            Step::Q4Max(s) => s.on_timer(timer.timestamp, out),
            Step::Q5Top(s) => s.on_timer(out),
            Step::Q7(s) => s.on_timer(timer.timestamp, out),
            Step::Q8(s) => s.on_timer(timer.timestamp),
            Step::Q3(_) | Step::Q4Avg(_) => Ok(()),
        }
    }
}

/// q3: people joined with their category-10 auctions, for ever (Flink keeps both sides
/// of a regular join). People are unique, so only auctions that came first wait.
struct Q3 {
    person: ValueState<Q3Person<'static>>,
    pending: ListState<i64>,
}

impl Q3 {
    fn process(&mut self, events: &[Event<'_>], out: &mut Emitter<'_>) -> Result<(), Error> {
        let mut person = self.person.get()?;
        for event in events {
            let input: Q3In<'static> = event.json()?;
            if let Some(p) = input.person {
                for id in self.pending.get()? {
                    out.json(&q3_row(&p, id))?;
                }
                self.pending.clear();
                self.person.set(&p)?;
                person = Some(p);
            } else if let Some(id) = input.auction {
                match &person {
                    Some(p) => out.json(&q3_row(p, id))?,
                    None => self.pending.add(&id)?,
                }
            }
        }
        Ok(())
    }
}

fn q3_row<'a>(p: &'a Q3Person<'_>, id: i64) -> Q3Row<'a> {
    Q3Row {
        name: p.name.as_deref(),
        city: p.city.as_deref(),
        state: p.state.as_deref(),
        id,
    }
}

/// q4, first half: per auction the highest bid between its opening and its expiry
/// (both inclusive), emitted when the watermark passes the expiry.
struct Q4Max {
    auction: ValueState<Q4Auction>,
    max: ValueState<i64>,
    /// Bids that came before their auction (another subtask's source may be ahead).
    early: ListState<Q4Bid>,
}

impl Q4Max {
    fn process(&mut self, events: &[Event<'_>]) -> Result<(), Error> {
        let mut auction = self.auction.get()?;
        let before = self.max.get()?;
        let mut max = before;
        let offer = |max: &mut Option<i64>, a: &Q4Auction, b: Q4Bid| {
            if (a.date_time..=a.expires).contains(&b.date_time) {
                *max = Some(max.map_or(b.price, |m| m.max(b.price)));
            }
        };
        for event in events {
            let input: Q4In = event.json()?;
            if let Some(a) = input.auction {
                for b in self.early.get()? {
                    offer(&mut max, &a, b);
                }
                self.early.clear();
                self.auction.set(&a)?;
                keyed::register_timer(TimeDomain::EventTime, a.expires);
                auction = Some(a);
            } else if let Some(b) = input.bid {
                match &auction {
                    Some(a) => offer(&mut max, a, b),
                    None => {
                        self.early.add(&b)?;
                        let forget = (b.date_time / EARLY_BID_MS + 1) * EARLY_BID_MS;
                        keyed::register_timer(TimeDomain::EventTime, forget);
                    }
                }
            }
        }
        if let Some(m) = max.filter(|_| max != before) {
            self.max.set(&m)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, at: i64, out: &mut Emitter<'_>) -> Result<(), Error> {
        match self.auction.get()? {
            Some(a) if at >= a.expires => {
                if let Some(max) = self.max.get()? {
                    out.json(&CategoryMax {
                        category: a.category,
                        max,
                    })?;
                }
                self.auction.clear();
                self.max.clear();
                self.early.clear();
            }
            Some(_) => {}
            // Bids for an auction that never came (or came and closed before them).
            None => self.early.clear(),
        }
        Ok(())
    }
}

/// q4, second half: per category the average of the auctions' maxima, as an updating
/// result (each change retracts the category's previous row).
struct Q4Avg {
    sum_count: ValueState<(i64, i64)>,
}

impl Q4Avg {
    fn process(&mut self, events: &[Event<'_>], out: &mut Emitter<'_>) -> Result<(), Error> {
        let before = self.sum_count.get()?;
        let (mut sum, mut count) = before.unwrap_or((0, 0));
        let mut category = None;
        for event in events {
            let m: CategoryMax = event.json()?;
            category = m.category;
            sum += m.max;
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let avg = sum / count;
        if let Some((s, c)) = before.filter(|&(_, c)| c > 0) {
            if s / c == avg {
                self.sum_count.set(&(sum, count))?;
                return Ok(());
            }
            out.json(&CategoryAvg {
                category,
                avg: s / c,
                retract: true,
            })?;
        }
        out.json(&CategoryAvg {
            category,
            avg,
            retract: false,
        })?;
        self.sum_count.set(&(sum, count))
    }
}

/// q5, second half: per hop window (the key is its end) the auctions with the most
/// bids, emitted once every subtask's counts for the window are in.
struct Q5Top {
    best: ValueState<(u64, Vec<i64>)>,
}

impl Q5Top {
    fn process(&mut self, events: &[Event<'_>]) -> Result<(), Error> {
        let (mut num, mut auctions) = self.best.get()?.unwrap_or_default();
        for event in events {
            let count: HopCount<'_> = event.json()?;
            let auction: i64 = count
                .key
                .parse()
                .map_err(|_| Error::msg(format_args!("auction key {:?}", count.key)))?;
            if count.num > num {
                num = count.num;
                auctions.clear();
            }
            if count.num == num {
                auctions.push(auction);
            }
            keyed::register_timer(TimeDomain::EventTime, count.window_end - 1);
        }
        self.best.set(&(num, auctions))
    }

    fn on_timer(&mut self, out: &mut Emitter<'_>) -> Result<(), Error> {
        if let Some((num, auctions)) = self.best.get()? {
            for auction in auctions {
                out.json(&AuctionCount { auction, num })?;
            }
        }
        self.best.clear();
        Ok(())
    }
}

/// q7's state for one tumbling window: its highest price, the window's bids at that
/// price, and the bids at exactly its end (they belong to the next window but, by the
/// query's inclusive bound, also match this one's maximum).
#[derive(Default, Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct Highest {
    max: Option<i64>,
    bids: Vec<Q7Bid>,
    at_end: Vec<Q7Bid>,
}

/// q7: the bids with each 10 s window's highest price.
struct Q7 {
    windows: MapState<Highest>,
}

impl Q7 {
    fn process(&mut self, events: &[Event<'_>]) -> Result<(), Error> {
        let mut touched: BTreeMap<i64, Highest> = BTreeMap::new();
        for event in events {
            let input: Q7In = event.json()?;
            let bid = input.bid;
            let t = bid.date_time;
            if t.rem_euclid(WINDOW_MS) == 0 {
                window(&self.windows, &mut touched, t, t)?
                    .at_end
                    .push(bid.clone());
            }
            let end = t - t.rem_euclid(WINDOW_MS) + WINDOW_MS;
            let w = window(&self.windows, &mut touched, end, end)?;
            match w.max {
                Some(m) if bid.price < m => {}
                Some(m) if bid.price == m => w.bids.push(bid),
                _ => {
                    w.max = Some(bid.price);
                    w.bids = vec![bid];
                }
            }
        }
        for (end, w) in touched {
            self.windows.put(&end.to_string(), &w)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, end: i64, out: &mut Emitter<'_>) -> Result<(), Error> {
        let name = end.to_string();
        let Some(w) = self.windows.get(&name)? else {
            return Ok(());
        };
        self.windows.remove(&name);
        let Some(max) = w.max else {
            return Ok(());
        };
        for bid in w.bids.iter().chain(&w.at_end).filter(|b| b.price == max) {
            out.json(bid)?;
        }
        Ok(())
    }
}

/// q8's state for one person and window: their name once they appear, and whether
/// they opened an auction in it.
#[derive(Default, Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
struct NewUser {
    person: bool,
    name: Option<String>,
    auction: bool,
    emitted: bool,
}

/// q8: people who opened an auction in the 10 s window they appeared in, one row per
/// person and window, as soon as both are seen.
struct Q8 {
    windows: MapState<NewUser>,
}

impl Q8 {
    fn process(
        &mut self,
        key: &[u8],
        events: &[Event<'_>],
        out: &mut Emitter<'_>,
    ) -> Result<(), Error> {
        let id: i64 = std::str::from_utf8(key)?
            .parse()
            .map_err(|_| Error::msg("person id key"))?;
        let mut touched: BTreeMap<i64, NewUser> = BTreeMap::new();
        for event in events {
            let input: Q8In<'static> = event.json()?;
            let start = input.date_time - input.date_time.rem_euclid(WINDOW_MS);
            let w = window(&self.windows, &mut touched, start, start + WINDOW_MS - 1)?;
            if input.person {
                w.person = true;
                w.name = input.name.map(String::from);
            } else {
                w.auction = true;
            }
            if w.person && w.auction && !w.emitted {
                w.emitted = true;
                out.json(&Q8Row {
                    id,
                    name: w.name.as_deref(),
                    window_start: start,
                })?;
            }
        }
        for (start, w) in touched {
            self.windows.put(&start.to_string(), &w)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, at: i64) -> Result<(), Error> {
        self.windows.remove(&(at + 1 - WINDOW_MS).to_string());
        Ok(())
    }
}

/// The entry of window `at` in map state `windows`, read once per call into `touched`
/// (which the call writes back at its end); a window seen for the first time gets an
/// event-time timer at `timer`.
fn window<'a, V>(
    windows: &MapState<V>,
    touched: &'a mut BTreeMap<i64, V>,
    at: i64,
    timer: i64,
) -> Result<&'a mut V, Error>
where
    V: Default + Serialize + DeserializeOwned,
{
    match touched.entry(at) {
        Entry::Occupied(slot) => Ok(slot.into_mut()),
        Entry::Vacant(slot) => {
            let w = match windows.get(&at.to_string())? {
                Some(w) => w,
                None => {
                    keyed::register_timer(TimeDomain::EventTime, timer);
                    V::default()
                }
            };
            Ok(slot.insert(w))
        }
    }
}
