//! A Kafka cluster inside this process (librdkafka's mock cluster), for benchmarks and demos
//! of `CREATE SOURCE`: it creates a topic, produces `EVENTS` JSON events to it, reads them all
//! back with a plain librdkafka consumer that does nothing with them (the ceiling any consumer
//! of this broker has), prints the bootstrap servers on a line of their own and the read's
//! seconds on the next, then — given a `RATE` — goes on producing that many events a second,
//! and serves until its standard input closes.
//!
//!     cargo run --release --example kafka_mock -- clicks 3 1000000 [RATE]
//!
//! Event `i` is `{"user_id": "<i % 10000>", "item_id": "i<i % 5000>", "event_type": "view",
//! "weight": 1.0}`, on partition `i % PARTITIONS`. The mock keeps at most 100,000 messages or
//! 5 MB per partition and deletes older ones, as retention would: spread large topics over
//! enough partitions.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::error::Error;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (topic, partitions, events, rate) = match args.as_slice() {
        [topic, partitions, events] => (topic, partitions, events, None),
        [topic, partitions, events, rate] => {
            (topic, partitions, events, Some(rate.parse::<f64>()?))
        }
        _ => return Err("usage: kafka_mock TOPIC PARTITIONS EVENTS [RATE]".into()),
    };
    let partitions: i32 = partitions.parse()?;
    let events: i64 = events.parse()?;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(topic, partitions, 1)?;
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let send = |i: i64| -> Result<(), KafkaError> {
        let payload = format!(
            r#"{{"user_id": "{}", "item_id": "i{}", "event_type": "view", "weight": 1.0}}"#,
            i % 10_000,
            i % 5_000
        );
        let partition = (i % i64::from(partitions)) as i32;
        loop {
            let record = BaseRecord::<(), str>::to(topic)
                .payload(&payload)
                .partition(partition);
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((error, _)) => return Err(error),
            }
        }
    };
    for i in 0..events {
        send(i)?;
    }
    producer.flush(Duration::from_secs(300))?;
    let read = read_back(&brokers, topic, partitions, events)?;
    println!("{brokers}");
    println!("{:.3}", read.as_secs_f64());
    std::io::stdout().flush()?;
    // serve until whoever started us closes our standard input
    let closed = Arc::new(AtomicBool::new(false));
    let watcher = {
        let closed = closed.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            closed.store(true, Ordering::Release);
        })
    };
    let started = Instant::now();
    let mut sent = 0i64;
    while !closed.load(Ordering::Acquire) {
        if let Some(rate) = rate {
            let due = (started.elapsed().as_secs_f64() * rate) as i64;
            while sent < due {
                send(events + sent)?;
                sent += 1;
            }
        }
        producer.poll(Duration::from_millis(10));
    }
    producer.flush(Duration::from_secs(10))?;
    watcher.join().map_err(|_| "the stdin watcher panicked")?;
    Ok(())
}

/// How long a consumer takes to read the first `events` messages of `topic` from the start.
fn read_back(
    brokers: &str,
    topic: &str,
    partitions: i32,
    events: i64,
) -> Result<Duration, Box<dyn Error>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-mock-read-back")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let mut read = 0;
    while read < events {
        match consumer.poll(Duration::from_secs(10)) {
            Some(message) => {
                message?;
                read += 1;
            }
            None => return Err(format!("read back only {read} of {events}").into()),
        }
    }
    Ok(started.elapsed())
}
