//! What the select step hands the stateful steps, and the queries' output rows. Each
//! intermediate record carries `key`, the field the job's `key-by` step uses.

use std::borrow::Cow;

use eddy_sdk::serde::{Deserialize, Serialize};
use eddy_sdk::serde_json::value::RawValue;

/// q0's row (and q1's, with the price as a decimal string).
#[derive(Serialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct BidRow<'a, P> {
    pub auction: Option<i64>,
    pub bidder: Option<i64>,
    pub price: P,
    pub date_time: Option<i64>,
    pub extra: Option<&'a RawValue>,
}

/// q2's row.
#[derive(Serialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct AuctionPrice {
    pub auction: i64,
    pub price: Option<i64>,
}

/// q3's input: a person of the wanted states, or an auction of category 10 (by seller).
#[derive(Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q3In<'a> {
    pub key: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub person: Option<Q3Person<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auction: Option<i64>,
}

/// The person columns q3 outputs; also kept as the join's state.
#[derive(Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q3Person<'a> {
    pub name: Option<Cow<'a, str>>,
    pub city: Option<Cow<'a, str>>,
    pub state: Option<Cow<'a, str>>,
}

/// q3's row.
#[derive(Serialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q3Row<'a> {
    pub name: Option<&'a str>,
    pub city: Option<&'a str>,
    pub state: Option<&'a str>,
    pub id: i64,
}

/// q4's input: an auction, or a bid (keyed by auction id).
#[derive(Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q4In {
    pub key: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auction: Option<Q4Auction>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bid: Option<Q4Bid>,
}

/// What q4 keeps of an auction.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q4Auction {
    pub category: Option<i64>,
    pub date_time: i64,
    pub expires: i64,
}

/// What q4 keeps of a bid.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q4Bid {
    pub price: i64,
    pub date_time: i64,
}

/// One closed auction's highest bid, keyed by category for the average.
#[derive(Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct CategoryMax {
    pub category: Option<i64>,
    pub max: i64,
}

/// q4's row; a retraction withdraws an earlier row of the same category.
#[derive(Serialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct CategoryAvg {
    pub category: Option<i64>,
    pub avg: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retract: bool,
}

/// One auction's bid count in one hop window (the built-in window's row).
#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct HopCount<'a> {
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    pub window_end: i64,
    pub num: u64,
}

/// q5's row.
#[derive(Serialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct AuctionCount {
    pub auction: i64,
    pub num: u64,
}

/// q7's input and row: a bid (every bid has key 0: the maximum is global).
#[derive(Serialize, Deserialize, Clone)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q7Bid {
    pub auction: Option<i64>,
    pub price: i64,
    pub bidder: Option<i64>,
    pub date_time: i64,
    pub extra: Option<Box<RawValue>>,
}

/// q7's input wrapper: the bid with the constant key.
#[derive(Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q7In {
    pub key: i64,
    pub bid: Q7Bid,
}

/// q8's input: a person (by id) or an auction (by seller), with its event time.
#[derive(Serialize, Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q8In<'a> {
    pub key: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<Cow<'a, str>>,
    pub person: bool,
    pub date_time: i64,
}

/// q8's row.
#[derive(Serialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Q8Row<'a> {
    pub id: i64,
    pub name: Option<&'a str>,
    pub window_start: i64,
}
