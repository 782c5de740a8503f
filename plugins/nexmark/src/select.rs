//! The first step of every query: reads an event and emits what the query needs of it,
//! or nothing.

use std::fmt;

use eddy_sdk::serde::{Serialize, Serializer};
use eddy_sdk::{Context, Emitter, Error, Event, FlatMap};

use crate::event::{self, Event as Nexmark};
use crate::rows::*;

/// Which query the step serves (param `query`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    Q0,
    Q1,
    Q2,
    Q3,
    Q4,
    Q5,
    Q7,
    Q8,
}

/// The flat-map every query starts with (`params: { query: q0 }`).
pub struct Select {
    query: Query,
}

/// q1's price: dollars times 0.908, exactly, with three fraction digits.
struct Euros(i64);

impl Euros {
    /// The decimal text at the end of `buf`; returns where it starts. Written without
    /// the formatting machinery: it is q1's hot path.
    fn write(&self, buf: &mut [u8; 32]) -> usize {
        let thousandths = i128::from(self.0) * 908;
        let negative = thousandths < 0;
        // 64-bit division while the amount fits (always, for real prices).
        match u64::try_from(thousandths.unsigned_abs()) {
            Ok(small) => write_thousandths(buf, small, negative),
            Err(_) => write_thousandths(buf, thousandths.unsigned_abs(), negative),
        }
    }
}

/// Writes `thousandths` / 1000 with three fraction digits at the end of `buf`.
fn write_thousandths<T>(buf: &mut [u8; 32], mut thousandths: T, negative: bool) -> usize
where
    T: Copy + PartialEq + From<u8> + std::ops::Div<Output = T> + std::ops::Rem<Output = T>,
    u8: TryFrom<T>,
{
    let (zero, ten) = (T::from(0), T::from(10));
    let mut at = buf.len();
    let mut emitted = 0;
    while thousandths != zero || emitted < 4 {
        if emitted == 3 {
            at -= 1;
            buf[at] = b'.';
        }
        at -= 1;
        buf[at] = b'0' + u8::try_from(thousandths % ten).unwrap_or(0);
        thousandths = thousandths / ten;
        emitted += 1;
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    at
}

impl fmt::Display for Euros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; 32];
        let at = self.write(&mut buf);
        f.write_str(std::str::from_utf8(&buf[at..]).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Euros {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0; 32];
        let at = self.write(&mut buf);
        match std::str::from_utf8(&buf[at..]) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Err(eddy_sdk::serde::ser::Error::custom("digits are ASCII")),
        }
    }
}

/// q3 keeps people from these states.
const Q3_STATES: [&str; 3] = ["OR", "ID", "CA"];

impl FlatMap for Select {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let name: String = ctx.require("query")?;
        let query = match name.as_str() {
            "q0" => Query::Q0,
            "q1" => Query::Q1,
            "q2" => Query::Q2,
            "q3" => Query::Q3,
            "q4" => Query::Q4,
            "q5" => Query::Q5,
            "q7" => Query::Q7,
            "q8" => Query::Q8,
            other => {
                return Err(Error::msg(format_args!(
                    "unknown query {other:?} (expected q0, q1, q2, q3, q4, q5, q7 or q8)"
                )));
            }
        };
        Ok(Select { query })
    }

    fn flat_map(&mut self, input: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        let event: Nexmark<'_> = input.json()?;
        match (self.query, event) {
            (Query::Q0, Nexmark::Bid(b)) => out.json(&bid_row(&b, b.price)),
            (Query::Q1, Nexmark::Bid(b)) => out.json(&bid_row(&b, b.price.map(Euros))),
            (Query::Q2, Nexmark::Bid(b)) => match b.auction {
                Some(auction) if auction % 123 == 0 => out.json(&AuctionPrice {
                    auction,
                    price: b.price,
                }),
                _ => Ok(()),
            },
            (Query::Q3, Nexmark::Person(p)) => match (p.id, &p.state) {
                (Some(key), Some(state)) if Q3_STATES.contains(&state.as_ref()) => {
                    out.json(&Q3In {
                        key,
                        person: Some(Q3Person {
                            name: p.name,
                            city: p.city,
                            state: p.state,
                        }),
                        auction: None,
                    })
                }
                _ => Ok(()),
            },
            (Query::Q3, Nexmark::Auction(a)) => match (a.seller, a.id, a.category) {
                (Some(key), Some(id), Some(10)) => out.json(&Q3In {
                    key,
                    person: None,
                    auction: Some(id),
                }),
                _ => Ok(()),
            },
            (Query::Q4, Nexmark::Auction(a)) => match (a.id, a.date_time, a.expires) {
                (Some(key), Some(date_time), Some(expires)) => out.json(&Q4In {
                    key,
                    auction: Some(Q4Auction {
                        category: a.category,
                        date_time,
                        expires,
                    }),
                    bid: None,
                }),
                _ => Ok(()),
            },
            (Query::Q4, Nexmark::Bid(b)) => match (b.auction, b.price, b.date_time) {
                (Some(key), Some(price), Some(date_time)) => out.json(&Q4In {
                    key,
                    auction: None,
                    bid: Some(Q4Bid { price, date_time }),
                }),
                _ => Ok(()),
            },
            (Query::Q5, Nexmark::Bid(b)) => match b.auction {
                Some(auction) => out.json(&AuctionOnly { auction }),
                None => Ok(()),
            },
            (Query::Q7, Nexmark::Bid(b)) => match (b.price, b.date_time) {
                (Some(price), Some(date_time)) => out.json(&Q7In {
                    key: 0,
                    bid: Q7Bid {
                        auction: b.auction,
                        price,
                        bidder: b.bidder,
                        date_time,
                        extra: b.extra.map(ToOwned::to_owned),
                    },
                }),
                _ => Ok(()),
            },
            (Query::Q8, Nexmark::Person(p)) => match (p.id, p.date_time) {
                (Some(key), Some(date_time)) => out.json(&Q8In {
                    key,
                    name: p.name,
                    person: true,
                    date_time,
                }),
                _ => Ok(()),
            },
            (Query::Q8, Nexmark::Auction(a)) => match (a.seller, a.date_time) {
                (Some(key), Some(date_time)) => out.json(&Q8In {
                    key,
                    name: None,
                    person: false,
                    date_time,
                }),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// q5's input: the bid's auction (the bid's time is the event's own).
#[derive(Serialize)]
#[serde(crate = "eddy_sdk::serde")]
struct AuctionOnly {
    auction: i64,
}

fn bid_row<'a, P>(b: &'a event::Bid<'_>, price: P) -> BidRow<'a, P> {
    BidRow {
        auction: b.auction,
        bidder: b.bidder,
        price,
        date_time: b.date_time,
        extra: b.extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euros_are_exact_with_three_digits() {
        assert_eq!(Euros(12142).to_string(), "11024.936");
        assert_eq!(Euros(1).to_string(), "0.908");
        assert_eq!(Euros(0).to_string(), "0.000");
        assert_eq!(Euros(-5).to_string(), "-4.540");
        assert_eq!(Euros(i64::MAX).to_string(), "8374821809464136432.756");
        assert_eq!(Euros(i64::MIN).to_string(), "-8374821809464136433.664");
    }
}
