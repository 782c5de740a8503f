//! A real Kafka-protocol broker for tests, in a process of its own (so that a job can
//! be killed while the broker lives on, and the broker itself can be killed), and the
//! client calls tests need: topics, records in, committed records out.
//!
//! The broker is built from `tests/kafka-broker` (once, cached). Setting
//! `EDDY_KAFKA_BOOTSTRAP` runs the tests against an external cluster instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker binary, built on first use.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let script = crate::repo_root().join("tests/kafka-broker/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot run tests/kafka-broker/build.sh");
        assert!(out.status.success(), "building the Kafka broker failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// A Kafka record as tests write and read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Partition to write to (the partitioner's choice when absent).
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<String>,
    /// The value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Timestamp in ms since the epoch (the producer's clock when absent).
    pub timestamp: Option<i64>,
}

impl Record {
    /// An unkeyed record of `value` for `partition`.
    pub fn value(partition: Option<i32>, value: impl Into<Vec<u8>>) -> Record {
        Record {
            partition,
            value: value.into(),
            ..Record::default()
        }
    }

    fn from_message(m: &BorrowedMessage<'_>) -> Record {
        Record {
            partition: Some(m.partition()),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: m.payload().unwrap_or_default().to_vec(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = h.value.unwrap_or_default();
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(value).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            timestamp: m.timestamp().to_millis(),
        }
    }
}

/// A broker on loopback, stopped when dropped.
pub struct Broker {
    /// `host:port` to bootstrap from.
    pub bootstrap: String,
    child: Option<Child>,
    data: PathBuf,
    port: u16,
}

impl Broker {
    /// Starts a broker keeping its data in `dir` (or connects to `EDDY_KAFKA_BOOTSTRAP`).
    pub fn start(dir: &Path) -> Broker {
        if let Ok(bootstrap) = std::env::var("EDDY_KAFKA_BOOTSTRAP") {
            return Broker {
                bootstrap,
                child: None,
                data: dir.to_owned(),
                port: 0,
            };
        }
        let mut broker = Broker {
            bootstrap: String::new(),
            child: None,
            data: dir.join("kafka"),
            port: 0,
        };
        broker.launch();
        broker
    }

    /// Whether the broker is this test's own (an external one cannot be restarted).
    pub fn is_local(&self) -> bool {
        self.port != 0
    }

    fn launch(&mut self) {
        let port_file = self.data.join("bootstrap");
        let _ = std::fs::create_dir_all(&self.data);
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new(binary())
            .args(["-port", &self.port.to_string(), "-data-dir"])
            .arg(&self.data)
            .arg("-port-file")
            .arg(&port_file)
            .args(["-default-partitions", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the Kafka broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(port) = text.trim().rsplit(':').next().and_then(|p| p.parse().ok())
            {
                self.bootstrap = text.trim().to_owned();
                self.port = port;
                return;
            }
            assert!(Instant::now() < deadline, "the Kafka broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker with SIGKILL and starts it again on the same port and data.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.launch();
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.config().create().expect("admin client")
    }

    /// Creates `topic` with `partitions` partitions (it must not exist yet).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = block_on(self.admin().create_topics([&new], &AdminOptions::new()))
            .expect("create topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
    }

    /// Grows `topic` to `partitions` partitions.
    pub fn add_partitions(&self, topic: &str, partitions: usize) {
        let new = NewPartitions::new(topic, partitions);
        let results = block_on(self.admin().create_partitions([&new], &AdminOptions::new()))
            .expect("create partitions");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot add partitions to {t}: {e}"));
        }
    }

    /// Writes `records`, and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[Record]) {
        let producer: BaseProducer = self.config().create().expect("producer");
        for r in records {
            let mut headers = OwnedHeaders::new();
            for (name, value) in &r.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            let mut record = BaseRecord::<str, [u8]>::to(topic)
                .payload(r.value.as_slice())
                .headers(headers);
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            if let Some(k) = &r.key {
                record = record.key(k.as_str());
            }
            if let Some(ts) = r.timestamp {
                record = record.timestamp(ts);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("cannot produce: {e}"),
                }
            }
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("records acknowledged");
    }

    /// Commits `offset` for partition `partition` of `topic` in consumer group `group`.
    pub fn commit_offset(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("offset");
        consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .expect("commit");
    }

    /// Every record of `topic` a `read_committed` consumer sees now: values as text.
    pub fn read_committed(&self, topic: &str) -> Vec<String> {
        self.read_records(topic)
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    }

    /// Every record of `topic` a `read_committed` consumer sees now.
    pub fn read_records(&self, topic: &str) -> Vec<Record> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "eddy-test-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("assignable partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut at_end = std::collections::HashSet::new();
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while at_end.len() < partitions.len() {
            assert!(Instant::now() < deadline, "reading {topic} took too long");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => records.push(Record::from_message(&m)),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        records
    }

    /// Waits until `topic` has at least `n` committed records (or `timeout` passes),
    /// and returns what it has.
    pub fn wait_for(&self, topic: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let values = self.read_committed(topic);
            if values.len() >= n || Instant::now() >= deadline {
                return values;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `future` to completion on this thread. The admin client's futures are woken by
/// librdkafka's own threads, so parking until woken is all an executor has to do (and
/// the test kit needs no async runtime whose features would differ from the binary's).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::Thread;

    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}
