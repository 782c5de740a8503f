//! The Kafka source: the partitions of its topics are splits, each read from an offset
//! that checkpoints record, with a watermark of its own.
//!
//! Partitions are assigned explicitly (no consumer-group rebalancing): partition `p` of
//! the `i`-th topic belongs to subtask `(i + p) % parallelism`. Offsets come from the
//! checkpoint on recovery, else from `start-from`; every split's first offset is made
//! concrete at start, so that a checkpoint taken before a split's first record still
//! resumes where this run began. The consumer group only receives offsets for
//! monitoring, at each barrier.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eddy_core::Batch;
use eddy_core::batch::{EventRef, Header};
use eddy_core::job::Format;
use eddy_core::job::kafka::{KafkaSourceSpec, StartFrom};
use eddy_core::job::sandbox::OnError;
use eddy_core::source::{Rejected, Source, SourceError};
use eddy_core::state::{Decoder, Encoder, StateError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{Quiet, client_config, describe};

/// How long a metadata or offsets request may take before the source gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often partitions added to the topics are looked for, by default.
const DEFAULT_DISCOVERY: Duration = Duration::from_secs(30);

/// One partition this subtask reads.
struct Split {
    topic: String,
    partition: i32,
    /// Offset after the last record handed on.
    next: i64,
    /// Offset after the last record buffered in `pending`.
    fetched: i64,
    /// Where a bounded read stops.
    end: Option<i64>,
    /// Records read but not handed on yet.
    pending: Batch,
}

impl Split {
    fn ended(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }
}

/// One subtask of a Kafka source.
pub(crate) struct KafkaSource {
    name: String,
    spec: KafkaSourceSpec,
    subtask: u32,
    parallelism: u32,
    consumer: BaseConsumer<Quiet>,
    assigned: Assigned,
    started: bool,
    /// Offsets and ends from the checkpoint being restored, in split order.
    restored: Vec<(String, i32, i64, Option<i64>)>,
    last: usize,
    next_discovery: Option<Instant>,
    /// With `max-rate`: when reading began, and how many records were handed on since.
    pacing: Option<(Instant, u64)>,
}

/// The splits a subtask reads, and what it rejected.
#[derive(Default)]
struct Assigned {
    splits: Vec<Split>,
    /// Split index by topic, then partition (looked up per record without allocating).
    index: HashMap<String, HashMap<i32, usize>>,
    /// Records buffered over all splits.
    buffered: usize,
    rejected: Vec<Rejected>,
}

impl Assigned {
    fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        self.index.get(topic)?.get(&partition).copied()
    }

    /// Buffers one record in its split, or rejects it.
    fn take(
        &mut self,
        name: &str,
        spec: &KafkaSourceSpec,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), SourceError> {
        let Some(i) = self.find(message.topic(), message.partition()) else {
            return Ok(());
        };
        let offset = message.offset();
        let split = &self.splits[i];
        if offset < split.fetched || split.end.is_some_and(|end| offset >= end) {
            return Ok(());
        }
        let value = message.payload();
        let problem = match (spec.format, value) {
            (Format::Json, None) => Some("the record has no value (a tombstone)".to_owned()),
            (Format::Json, Some(v)) => serde_json::from_slice::<serde::de::IgnoredAny>(v)
                .err()
                .map(|e| format!("malformed JSON: {e}")),
            (Format::Raw, _) => None,
        };
        let split = &mut self.splits[i];
        if let Some(problem) = problem {
            let error = format!(
                "{}/{} offset {offset}: {problem}",
                split.topic, split.partition
            );
            if spec.on_error != OnError::DeadLetter {
                // The split's offsets stay before it: a restart meets it again.
                return Err(SourceError::Other {
                    source_name: name.to_owned(),
                    message: error,
                });
            }
            split.fetched = offset + 1;
            if split.pending.is_empty() {
                // Everything before it was handed on: so is the rejected record.
                split.next = split.fetched;
            }
            self.rejected.push(Rejected {
                key: message.key().map(<[u8]>::to_vec),
                value: value.unwrap_or_default().to_vec(),
                error,
            });
            return Ok(());
        }
        split.fetched = offset + 1;
        let batch = &mut split.pending;
        let event = batch.len() as u32;
        batch
            .push(EventRef {
                key: message.key(),
                value: value.unwrap_or_default(),
                timestamp: message.timestamp().to_millis(),
            })
            .map_err(|e| SourceError::Other {
                source_name: name.to_owned(),
                message: e.to_string(),
            })?;
        if let Some(headers) = message.headers() {
            batch.headers.extend(headers.iter().map(|h| Header {
                event,
                name: h.key.to_owned(),
                value: h.value.unwrap_or_default().to_vec(),
            }));
        }
        self.buffered += 1;
        Ok(())
    }
}

impl KafkaSource {
    /// Subtask `subtask` of source `name` of job `job`, connected but not reading yet.
    pub(crate) fn open(
        job: &str,
        name: &str,
        spec: &KafkaSourceSpec,
        subtask: u32,
    ) -> Result<KafkaSource, SourceError> {
        let group = spec
            .group
            .clone()
            .unwrap_or_else(|| format!("eddy-{job}-{name}"));
        let who = format!("Kafka source {name:?}");
        let consumer = client_config(
            &who,
            &spec.bootstrap,
            &spec.properties,
            &[
                ("isolation.level", "read_committed"),
                ("client.id", &format!("eddy-{job}-{name}-{subtask}")),
            ],
            &[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "true"),
                // Offsets are always explicit; one that is gone must not be skipped.
                ("auto.offset.reset", "error"),
            ],
        )
        .create_with_context(Quiet)
        .map_err(|e| SourceError::Other {
            source_name: name.to_owned(),
            message: format!("cannot create a Kafka consumer: {}", describe(&e)),
        })?;
        Ok(KafkaSource {
            name: name.to_owned(),
            spec: spec.clone(),
            subtask,
            parallelism: spec.parallelism.unwrap_or(1),
            consumer,
            assigned: Assigned::default(),
            started: false,
            restored: Vec::new(),
            last: 0,
            next_discovery: None,
            pacing: None,
        })
    }

    fn err(&self, message: String) -> SourceError {
        SourceError::Other {
            source_name: self.name.clone(),
            message,
        }
    }

    fn kafka_err(&self, what: &str, e: &KafkaError) -> SourceError {
        self.err(format!(
            "{what} on {}: {}",
            self.spec.bootstrap,
            describe(e)
        ))
    }

    /// The partitions of every topic that belong to this subtask, in topic order.
    fn owned_partitions(&self) -> Result<Vec<(String, i32)>, SourceError> {
        let mut owned = Vec::new();
        for (i, topic) in self.spec.topics.iter().enumerate() {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                .map_err(|e| self.kafka_err(&format!("cannot read topic {topic:?}"), &e))?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            let partitions = match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions(),
                _ => {
                    return Err(self.err(format!(
                        "topic {topic:?} does not exist on {}",
                        self.spec.bootstrap
                    )));
                }
            };
            let mut ids: Vec<i32> = partitions.iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            owned.extend(
                ids.into_iter()
                    .filter(|&p| (i as u32 + p as u32) % self.parallelism == self.subtask)
                    .map(|p| (topic.clone(), p)),
            );
        }
        Ok(owned)
    }

    /// The offset `start-from` means for a partition that no checkpoint knows.
    fn start_offset(
        &self,
        topic: &str,
        partition: i32,
        from: StartFrom,
    ) -> Result<i64, SourceError> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map_err(|e| {
                self.kafka_err(&format!("cannot read offsets of {topic}/{partition}"), &e)
            })?;
        let mut tpl = TopicPartitionList::new();
        let lookup = match from {
            StartFrom::Earliest => return Ok(low),
            StartFrom::Latest => return Ok(high),
            StartFrom::Timestamp(ts) => {
                tpl.add_partition_offset(topic, partition, Offset::Offset(ts))
                    .map_err(|e| self.kafka_err("bad timestamp", &e))?;
                self.consumer.offsets_for_times(tpl, REQUEST_TIMEOUT)
            }
            StartFrom::Committed => {
                tpl.add_partition(topic, partition);
                self.consumer.committed_offsets(tpl, REQUEST_TIMEOUT)
            }
        }
        .map_err(|e| {
            self.kafka_err(
                &format!("cannot look up the start of {topic}/{partition}"),
                &e,
            )
        })?;
        let found = lookup.find_partition(topic, partition).map(|e| e.offset());
        Ok(match (from, found) {
            (_, Some(Offset::Offset(o))) => o.clamp(low, high),
            // No record at or after the timestamp: only new ones will come.
            (StartFrom::Timestamp(_), _) => high,
            // No committed offset: from the beginning.
            _ => low,
        })
    }

    fn add_split(&mut self, topic: String, partition: i32, next: i64, end: Option<i64>) {
        let i = self.assigned.splits.len();
        self.assigned
            .index
            .entry(topic.clone())
            .or_default()
            .insert(partition, i);
        self.assigned.splits.push(Split {
            topic,
            partition,
            next,
            fetched: next,
            end,
            pending: Batch::default(),
        });
    }

    /// Adds a split for each partition of `owned` not read yet, starting at `from` (and
    /// ending at today's end when `bounded`); returns them for assignment.
    fn add_new_splits(
        &mut self,
        owned: Vec<(String, i32)>,
        from: StartFrom,
        bounded: bool,
    ) -> Result<TopicPartitionList, SourceError> {
        let mut added = TopicPartitionList::new();
        for (topic, partition) in owned {
            if self.assigned.find(&topic, partition).is_some() {
                continue;
            }
            let next = self.start_offset(&topic, partition, from)?;
            let end = if bounded {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                    .map_err(|e| self.kafka_err("cannot read the end offsets", &e))?;
                Some(high)
            } else {
                None
            };
            added
                .add_partition_offset(&topic, partition, Offset::Offset(next))
                .map_err(|e| self.kafka_err("cannot assign partitions", &e))?;
            self.add_split(topic, partition, next, end);
        }
        Ok(added)
    }

    fn discovery_interval(&self) -> Duration {
        self.spec
            .partition_discovery
            .map_or(DEFAULT_DISCOVERY, |s| s.0)
    }

    /// Resolves every split's first offset (checkpoint, else `start-from`) and its end,
    /// and starts fetching.
    fn start(&mut self) -> Result<(), SourceError> {
        self.started = true;
        let owned = self.owned_partitions()?;
        for (topic, partition, next, end) in std::mem::take(&mut self.restored) {
            if !owned.contains(&(topic.clone(), partition)) {
                return Err(self.err(format!(
                    "the checkpoint has partition {topic}/{partition}, which is not this \
                     subtask's (or no longer exists): restore with the same topics and \
                     parallelism"
                )));
            }
            self.add_split(topic, partition, next, end);
        }
        self.add_new_splits(owned, self.spec.start_from, self.spec.bounded)?;
        let mut tpl = TopicPartitionList::new();
        for s in self.assigned.splits.iter().filter(|s| !s.ended()) {
            tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.next))
                .map_err(|e| self.kafka_err("cannot assign partitions", &e))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| self.kafka_err("cannot assign partitions", &e))?;
        if !self.spec.bounded {
            self.next_discovery = Some(Instant::now() + self.discovery_interval());
        }
        tracing::info!(
            source = %self.name,
            subtask = self.subtask,
            "reading {} partition(s) from {}",
            self.assigned.splits.len(),
            self.spec.bootstrap
        );
        Ok(())
    }

    /// Picks up partitions added to the topics since the last look; they are read from
    /// their beginning.
    fn discover(&mut self) -> Result<(), SourceError> {
        match self.next_discovery {
            Some(due) if Instant::now() >= due => {}
            _ => return Ok(()),
        }
        self.next_discovery = Some(Instant::now() + self.discovery_interval());
        let owned = match self.owned_partitions() {
            Ok(owned) => owned,
            Err(e) => {
                tracing::warn!(source = %self.name, "partition discovery failed: {e}");
                return Ok(());
            }
        };
        let added = self.add_new_splits(owned, StartFrom::Earliest, false)?;
        for e in added.elements() {
            tracing::info!(
                source = %self.name,
                "new partition {}/{}: reading it from its beginning",
                e.topic(),
                e.partition()
            );
        }
        if added.count() > 0 {
            self.consumer
                .incremental_assign(&added)
                .map_err(|e| self.kafka_err("cannot assign new partitions", &e))?;
        }
        Ok(())
    }

    /// The end of partition `partition` was reached: a bounded split whose fetch
    /// position passed its end (transaction markers included) has ended.
    fn reached_end(&mut self, partition: i32) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for split in self
            .assigned
            .splits
            .iter_mut()
            .filter(|s| s.partition == partition)
        {
            let at = positions
                .find_partition(&split.topic, partition)
                .and_then(|e| e.offset().to_raw());
            if let (Some(at), Some(end)) = (at, split.end)
                && at >= end
            {
                // Nothing below the end is left to read.
                split.fetched = split.fetched.max(end);
                if split.pending.is_empty() {
                    split.next = split.fetched;
                }
            }
        }
    }

    /// Reads records until `max` are buffered or none is ready.
    fn fetch(&mut self, max: usize) -> Result<(), SourceError> {
        while self.assigned.buffered < max {
            let wait = if self.assigned.buffered > 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(20)
            };
            let Some(polled) = self.consumer.poll(wait) else {
                return Ok(());
            };
            match polled {
                Ok(message) => self.assigned.take(&self.name, &self.spec, &message)?,
                Err(KafkaError::PartitionEOF(partition)) => self.reached_end(partition),
                Err(e) => self.consumer_error(e)?,
            }
        }
        Ok(())
    }

    /// Connection trouble is retried by librdkafka; what cannot heal fails the source.
    fn consumer_error(&self, e: KafkaError) -> Result<(), SourceError> {
        let fatal = matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::OffsetOutOfRange
                    | RDKafkaErrorCode::AutoOffsetReset
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::Fatal
            )
        );
        if fatal {
            return Err(self.err(format!(
                "{} (a checkpointed offset no longer exists when retention deleted its records)",
                describe(&e)
            )));
        }
        tracing::warn!(source = %self.name, "Kafka: {}; retrying", describe(&e));
        Ok(())
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        if !self.started {
            self.start()?;
        }
        self.discover()?;
        if self.spec.bounded && self.assigned.splits.iter().all(Split::ended) {
            return Ok(None);
        }
        let mut max = max.max(1);
        if let Some(rate) = self.spec.max_rate {
            let (since, handed) = *self.pacing.get_or_insert((Instant::now(), 0));
            let due = (since.elapsed().as_secs_f64() * rate) as u64;
            if due <= handed {
                std::thread::sleep(
                    Duration::from_secs_f64(1.0 / rate).min(Duration::from_millis(20)),
                );
                return Ok(Some(Batch::default()));
            }
            max = max.min((due - handed) as usize);
        }
        self.fetch(max)?;
        let n = self.assigned.splits.len();
        let Some(i) = (1..=n)
            .map(|k| (self.last + k) % n)
            .find(|&i| !self.assigned.splits[i].pending.is_empty())
        else {
            return Ok(Some(Batch::default()));
        };
        self.last = i;
        let split = &mut self.assigned.splits[i];
        split.next = split.fetched;
        let batch = std::mem::take(&mut split.pending);
        self.assigned.buffered -= batch.len();
        if let Some((_, handed)) = &mut self.pacing {
            *handed += batch.len() as u64;
        }
        if split.ended() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&split.topic, split.partition);
            // Stops fetching past the end; the split is done either way.
            let _ = self.consumer.incremental_unassign(&tpl);
        }
        Ok(Some(batch))
    }

    fn splits(&self) -> usize {
        self.assigned.splits.len()
    }

    fn last_split(&self) -> usize {
        self.last
    }

    fn split_ended(&self, split: usize) -> bool {
        self.assigned.splits.get(split).is_some_and(Split::ended)
    }

    fn position(&mut self) -> Result<Vec<u8>, SourceError> {
        if !self.started {
            self.start()?;
        }
        let mut e = Encoder::new();
        e.count(self.assigned.splits.len());
        let mut offsets = TopicPartitionList::new();
        for s in &self.assigned.splits {
            e.bytes(s.topic.as_bytes())
                .u32(s.partition as u32)
                .i64(s.next)
                .opt_i64(s.end);
            let _ = offsets.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.next));
        }
        // For monitoring (consumer lag); recovery uses the checkpoint.
        if let Err(err) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(source = %self.name, "cannot commit offsets to the group: {}", describe(&err));
        }
        Ok(e.finish())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let mut d = Decoder::new(position);
        let decoded = (|| {
            let mut splits = Vec::new();
            for _ in 0..d.count()? {
                let topic = d.str()?.to_owned();
                let partition = d.u32()? as i32;
                splits.push((topic, partition, d.i64()?, d.opt_i64()?));
            }
            d.end()?;
            Ok::<_, StateError>(splits)
        })();
        self.restored = decoded.map_err(|e| self.err(format!("checkpointed position: {e}")))?;
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.assigned.rejected)
    }
}
