//! The generator's events, as the queries read them (fields they do not use are
//! skipped; a missing field or `null` is NULL).

use std::borrow::Cow;

use eddy_sdk::serde::Deserialize;
use eddy_sdk::serde_json::value::RawValue;

/// One event: `{"person": {...}}`, `{"auction": {...}}` or `{"bid": {...}}`.
#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde", rename_all = "snake_case")]
pub(crate) enum Event<'a> {
    Person(#[serde(borrow)] Person<'a>),
    Auction(Auction),
    Bid(#[serde(borrow)] Bid<'a>),
}

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Person<'a> {
    pub id: Option<i64>,
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub city: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub state: Option<Cow<'a, str>>,
    pub date_time: Option<i64>,
}

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Auction {
    pub id: Option<i64>,
    pub date_time: Option<i64>,
    pub expires: Option<i64>,
    pub seller: Option<i64>,
    pub category: Option<i64>,
}

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde")]
pub(crate) struct Bid<'a> {
    pub auction: Option<i64>,
    pub bidder: Option<i64>,
    pub price: Option<i64>,
    pub date_time: Option<i64>,
    /// Kept as JSON text: copied into outputs without unescaping and escaping again.
    #[serde(borrow)]
    pub extra: Option<&'a RawValue>,
}
