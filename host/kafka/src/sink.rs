//! The Kafka sink, at least once or exactly once.
//!
//! At least once, the writer produces as events come and waits at each barrier until
//! the brokers have acknowledged everything, so a completed checkpoint never lacks a
//! record (a restart may write some again).
//!
//! Exactly once, the writer stages records, and each barrier turns what it staged
//! into a *part* with the next sequence number. Its prepared output, stored in the
//! checkpoint, is every part not yet known to be committed. Once the checkpoint has
//! completed, the committer produces the parts above the commit marker in one Kafka
//! transaction, together with the new marker: the last part's sequence number, kept as
//! the committed offset of a consumer group named like the transactional id, so that
//! marker and records commit atomically. A recovering job commits its checkpoint's
//! prepared output again and the marker tells which parts already went out: nothing is
//! written twice, and nothing a completed checkpoint holds is lost. Transactional ids
//! are stable (`<prefix>-<subtask>`), so a new incarnation fences the previous one and
//! aborts whatever transaction it left open.
//!
//! Why not keep a transaction open across the barrier, as Flink does: librdkafka
//! cannot resume another process's transaction, so after a crash between a
//! checkpoint's completion and its commit, that output could only be aborted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_core::Batch;
use eddy_core::job::Job;
use eddy_core::job::kafka::{Guarantee, KafkaSinkSpec};
use eddy_core::sink::{Committer, Connected, Sink, SinkError};
use eddy_core::state::{Decoder, Encoder, StateError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::{Quiet, client_config, describe, report};

/// How long a flush or a transaction step may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sinks run as one subtask; its index in transactional ids.
const SUBTASK: u32 = 0;

/// Opens sink `name` of `job`: its writer and its committer.
pub(crate) fn connect(job: &Job, name: &str, spec: &KafkaSinkSpec) -> Result<Connected, SinkError> {
    let target = Target {
        name: name.to_owned(),
        topic: spec.topic.clone(),
    };
    if spec.guarantee != Guarantee::ExactlyOnce {
        let producer = Delivering::new(job, &target, spec)?;
        return Ok((Box::new(producer), Box::new(NothingToCommit)));
    }
    let prefix = spec
        .transactional_id_prefix
        .clone()
        .unwrap_or_else(|| format!("eddy-{}-{name}", job.name));
    let progress = Arc::new(Progress::default());
    let mut committer = Transactions {
        target: target.clone(),
        spec: spec.clone(),
        prefix,
        progress: progress.clone(),
        open: None,
    };
    // Fences the previous incarnation and aborts what it left open before anything
    // reads this topic's committed output.
    committer.transactional(SUBTASK)?;
    Ok((
        Box::new(Staging {
            target,
            current: Batch::default(),
            parts: Vec::new(),
            progress,
        }),
        Box::new(committer),
    ))
}

/// What the sink writes, for errors.
#[derive(Clone)]
struct Target {
    name: String,
    topic: String,
}

impl Target {
    fn err(&self, message: impl Into<String>) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            target: Some(format!("Kafka topic {:?}", self.topic)),
            error: std::io::Error::other(message.into()),
        }
    }

    fn kafka_err(&self, what: &str, e: &KafkaError) -> SinkError {
        self.err(format!("{what}: {}", describe(e)))
    }

    /// Fails clearly when the topic is missing, rather than at the first delivery.
    fn check_exists(
        &self,
        producer: &BaseProducer<Deliveries>,
        bootstrap: &str,
    ) -> Result<(), SinkError> {
        let metadata = producer
            .client()
            .fetch_metadata(Some(&self.topic), TIMEOUT)
            .map_err(|e| self.kafka_err(&format!("cannot reach {bootstrap}"), &e))?;
        match metadata.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            _ => Err(self.err(format!("the topic does not exist on {bootstrap}"))),
        }
    }

    /// Produces every event of `batch`, waiting for room when librdkafka's queue is full.
    fn produce(&self, producer: &BaseProducer<Deliveries>, batch: &Batch) -> Result<(), SinkError> {
        // Each event's headers, gathered in one pass over the batch's.
        let mut headers: Vec<Option<OwnedHeaders>> = Vec::new();
        if !batch.headers.is_empty() {
            headers.resize_with(batch.len(), || None);
            for h in &batch.headers {
                if let Some(slot) = headers.get_mut(h.event as usize) {
                    let owned = slot.take().unwrap_or_else(OwnedHeaders::new);
                    *slot = Some(owned.insert(Header {
                        key: &h.name,
                        value: Some(&h.value),
                    }));
                }
            }
        }
        for (i, event) in batch.iter().enumerate() {
            let headers = headers.get_mut(i).and_then(Option::take);
            let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(event.value);
            if let Some(key) = event.key {
                record = record.key(key);
            }
            if let Some(ts) = event.timestamp {
                record = record.timestamp(ts);
            }
            if let Some(headers) = headers {
                record = record.headers(headers);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(self.kafka_err("cannot produce", &e)),
                }
            }
        }
        producer.poll(Duration::ZERO);
        Ok(())
    }
}

/// Remembers the first failed delivery, reported at the next flush.
#[derive(Default)]
struct Deliveries {
    failed: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        report(&error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| describe(e));
        }
    }
}

impl Deliveries {
    fn take_failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// At least once (or with no guarantee): produces as events come.
struct Delivering {
    target: Target,
    producer: BaseProducer<Deliveries>,
    /// Whether barriers wait for acknowledgements.
    at_least_once: bool,
}

impl Delivering {
    fn new(job: &Job, target: &Target, spec: &KafkaSinkSpec) -> Result<Self, SinkError> {
        let at_least_once = spec.guarantee == Guarantee::AtLeastOnce;
        let client = format!("eddy-{}-{}", job.name, target.name);
        let idempotence = if at_least_once { "true" } else { "false" };
        let producer = client_config(
            &format!("Kafka sink {:?}", target.name),
            &spec.bootstrap,
            &spec.properties,
            &[
                ("client.id", &client),
                ("linger.ms", "5"),
                ("enable.idempotence", idempotence),
            ],
            &[],
        )
        .create_with_context(Deliveries::default())
        .map_err(|e| target.kafka_err("cannot create a Kafka producer", &e))?;
        target.check_exists(&producer, &spec.bootstrap)?;
        Ok(Delivering {
            target: target.clone(),
            producer,
            at_least_once,
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.producer
            .flush(TIMEOUT)
            .map_err(|e| self.target.kafka_err("cannot flush", &e))?;
        match self.producer.context().take_failure() {
            Some(failure) => Err(self
                .target
                .err(format!("a record was not delivered: {failure}"))),
            None => Ok(()),
        }
    }
}

impl Sink for Delivering {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.target.produce(&self.producer, batch)?;
        match self.producer.context().take_failure() {
            Some(failure) => Err(self
                .target
                .err(format!("a record was not delivered: {failure}"))),
            None => Ok(()),
        }
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        if self.at_least_once {
            self.flush()?;
        }
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Result<Vec<u8>, SinkError> {
        self.flush()?;
        Ok(Vec::new())
    }

    fn publish(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
}

/// Output that is visible once written has nothing to commit.
struct NothingToCommit;

impl Committer for NothingToCommit {
    fn commit(&mut self, _prepared: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// How far exactly-once output has got, shared by a sink's writer and its committer
/// (one process): the writer keeps every part until it is known committed, so that
/// each prepared output holds all uncommitted parts, whatever checkpoints were
/// abandoned or completed with the job's final state.
#[derive(Default)]
struct Progress {
    /// The highest part sequence number committed (the commit marker).
    committed: AtomicU64,
    /// The highest part sequence number seen, committed or restored.
    highest: AtomicU64,
}

impl Progress {
    fn saw(&self, seq: u64) {
        self.highest.fetch_max(seq, Ordering::SeqCst);
    }
}

/// Exactly once, writer side: stages records until a barrier makes them a part.
struct Staging {
    target: Target,
    current: Batch,
    /// Prepared parts not known to be committed, by sequence number.
    parts: Vec<(u64, Batch)>,
    progress: Arc<Progress>,
}

/// Format of a prepared output.
const PREPARED_VERSION: u8 = 2;

impl Sink for Staging {
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.current
            .append(batch)
            .map_err(|e| self.target.err(e.to_string()))
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<u8>, SinkError> {
        let committed = self.progress.committed.load(Ordering::SeqCst);
        self.parts.retain(|(seq, _)| *seq > committed);
        if !self.current.is_empty() {
            let last = self.parts.last().map_or(0, |(seq, _)| *seq);
            let seq = last.max(self.progress.highest.load(Ordering::SeqCst)) + 1;
            self.progress.saw(seq);
            self.parts.push((seq, std::mem::take(&mut self.current)));
        }
        let mut e = Encoder::new();
        e.u8(PREPARED_VERSION).u32(SUBTASK).count(self.parts.len());
        for (seq, records) in &self.parts {
            e.u64(*seq).batch(records);
        }
        Ok(e.finish())
    }

    fn publish(&mut self) -> Result<(), SinkError> {
        Err(self
            .target
            .err("exactly-once output is published by checkpoints, not as a side output"))
    }
}

/// A prepared output, read back: its subtask and its parts in sequence order.
struct Prepared {
    subtask: u32,
    parts: Vec<(u64, Batch)>,
}

impl Prepared {
    fn decode(bytes: &[u8]) -> Result<Prepared, StateError> {
        let mut d = Decoder::new(bytes);
        let version = d.u8()?;
        if version != PREPARED_VERSION {
            return Err(StateError(format!(
                "prepared Kafka output of version {version}, expected {PREPARED_VERSION}"
            )));
        }
        let subtask = d.u32()?;
        let parts = (0..d.count()?)
            .map(|_| Ok((d.u64()?, d.batch()?)))
            .collect::<Result<_, StateError>>()?;
        d.end()?;
        Ok(Prepared { subtask, parts })
    }
}

/// Exactly once, committer side: one transactional producer per sink subtask.
struct Transactions {
    target: Target,
    spec: KafkaSinkSpec,
    prefix: String,
    progress: Arc<Progress>,
    open: Option<Transactional>,
}

/// A transactional producer, and the marker that shows what it last committed.
struct Transactional {
    subtask: u32,
    producer: BaseProducer<Deliveries>,
    marker: BaseConsumer<Quiet>,
    /// The highest part sequence number committed.
    committed: u64,
}

impl Transactions {
    /// The producer of subtask `subtask`, initialized: the previous incarnation's
    /// producer is fenced and its open transaction aborted.
    fn transactional(&mut self, subtask: u32) -> Result<&mut Transactional, SinkError> {
        if self.open.as_ref().is_some_and(|t| t.subtask != subtask) {
            self.open = None;
        }
        if self.open.is_none() {
            let open = self.init(subtask)?;
            self.progress
                .committed
                .store(open.committed, Ordering::SeqCst);
            self.progress.saw(open.committed);
            self.open = Some(open);
        }
        self.open
            .as_mut()
            .ok_or_else(|| self.target.err("no transactional producer"))
    }

    fn init(&self, subtask: u32) -> Result<Transactional, SinkError> {
        let id = format!("{}-{subtask}", self.prefix);
        let who = format!("Kafka sink {:?}", self.target.name);
        let producer: BaseProducer<Deliveries> = client_config(
            &who,
            &self.spec.bootstrap,
            &self.spec.properties,
            &[("client.id", &id), ("linger.ms", "5")],
            &[("transactional.id", &id), ("enable.idempotence", "true")],
        )
        .create_with_context(Deliveries::default())
        .map_err(|e| {
            self.target
                .kafka_err("cannot create a transactional producer", &e)
        })?;
        self.target.check_exists(&producer, &self.spec.bootstrap)?;
        producer.init_transactions(TIMEOUT).map_err(|e| {
            self.target
                .kafka_err(&format!("cannot initialize transactions of {id:?}"), &e)
        })?;
        let marker: BaseConsumer<Quiet> = client_config(
            &who,
            &self.spec.bootstrap,
            &self.spec.properties,
            &[("client.id", &id)],
            &[
                ("group.id", &id),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
            ],
        )
        .create_with_context(Quiet)
        .map_err(|e| self.target.kafka_err("cannot create the marker reader", &e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.target.topic, 0);
        let found = marker.committed_offsets(tpl, TIMEOUT).map_err(|e| {
            self.target
                .kafka_err(&format!("cannot read the commit marker of {id:?}"), &e)
        })?;
        let committed = match found
            .find_partition(&self.target.topic, 0)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(seq)) => u64::try_from(seq).unwrap_or(0),
            _ => 0,
        };
        tracing::debug!(sink = %self.target.name, "transactional id {id:?} ready; part {committed} committed last");
        Ok(Transactional {
            subtask,
            producer,
            marker,
            committed,
        })
    }
}

impl Transactional {
    /// Produces `parts` and the marker of the last one in one transaction.
    fn commit(&mut self, target: &Target, parts: &[&(u64, Batch)]) -> Result<(), SinkError> {
        let Some(&&(last, _)) = parts.last() else {
            return Ok(());
        };
        let step = |what: &'static str| move |e: KafkaError| target.kafka_err(what, &e);
        self.producer
            .begin_transaction()
            .map_err(step("cannot begin a transaction"))?;
        for (_, records) in parts {
            if let Err(e) = target.produce(&self.producer, records) {
                let _ = self.producer.abort_transaction(TIMEOUT);
                return Err(e);
            }
        }
        let mut marker = TopicPartitionList::new();
        marker
            .add_partition_offset(&target.topic, 0, Offset::Offset(last as i64))
            .map_err(step("cannot write the commit marker"))?;
        let group = self
            .marker
            .group_metadata()
            .ok_or_else(|| target.err("the commit marker has no consumer group"))?;
        self.producer
            .send_offsets_to_transaction(&marker, &group, TIMEOUT)
            .map_err(step("cannot add the commit marker to the transaction"))?;
        self.producer
            .commit_transaction(TIMEOUT)
            .map_err(step("cannot commit the checkpoint's transaction"))?;
        self.committed = last;
        Ok(())
    }
}

impl Committer for Transactions {
    fn commit(&mut self, prepared: &[u8]) -> Result<(), SinkError> {
        if prepared.is_empty() {
            return Ok(());
        }
        let p = Prepared::decode(prepared)
            .map_err(|e| self.target.err(format!("corrupt prepared output: {e}")))?;
        let target = self.target.clone();
        let progress = self.progress.clone();
        let open = self.transactional(p.subtask)?;
        for (seq, _) in &p.parts {
            progress.saw(*seq);
        }
        let due: Vec<&(u64, Batch)> = p
            .parts
            .iter()
            .filter(|(seq, _)| *seq > open.committed)
            .collect();
        if due.len() < p.parts.len() {
            // Committed by an earlier commit of the same parts (a restore commits the
            // restored checkpoint's parts again): skipped, not sent twice.
            tracing::debug!(
                sink = %target.name,
                "{} part(s) were committed already",
                p.parts.len() - due.len()
            );
        }
        let committed = open.commit(&target, &due);
        match committed {
            Ok(()) => progress.committed.store(open.committed, Ordering::SeqCst),
            // Fenced or broken: the next attempt starts with a fresh producer.
            Err(_) => self.open = None,
        }
        committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staging(progress: &Arc<Progress>) -> Staging {
        Staging {
            target: Target {
                name: "out".into(),
                topic: "t".into(),
            },
            current: Batch::default(),
            parts: Vec::new(),
            progress: progress.clone(),
        }
    }

    fn one(value: &str) -> Batch {
        let mut b = Batch::default();
        b.push_value(value.as_bytes()).unwrap();
        b
    }

    fn seqs(prepared: &[u8]) -> Vec<u64> {
        let p = Prepared::decode(prepared).unwrap();
        p.parts.iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn prepared_output_keeps_every_part_until_it_is_committed() {
        let progress = Arc::new(Progress::default());
        // A restored commit marker says part 7 went out before.
        progress.committed.store(7, Ordering::SeqCst);
        progress.saw(7);
        let mut sink = staging(&progress);
        sink.write(&one("a")).unwrap();
        assert_eq!(seqs(&sink.prepare(1).unwrap()), [8]);
        // Checkpoint 1 was abandoned, or completed with the final state: part 8 stays.
        sink.write(&one("b")).unwrap();
        assert_eq!(seqs(&sink.prepare(2).unwrap()), [8, 9]);
        progress.committed.store(8, Ordering::SeqCst);
        assert_eq!(seqs(&sink.prepare(3).unwrap()), [9]);
        let last = sink.finish().unwrap();
        let p = Prepared::decode(&last).unwrap();
        assert_eq!(p.parts[0].1, one("b"));
        assert!(Prepared::decode(&last[..last.len() - 1]).is_err());
    }
}
