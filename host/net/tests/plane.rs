//! The data plane between two real data planes on localhost: order and control
//! messages, credit-based backpressure, channels that do not stall each other on one
//! connection, unaligned barriers, and a lost peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use eddy_core::Batch;
use eddy_core::exec::channel::{Channel, Message};
use eddy_core::exec::exchange::Outlet;
use eddy_core::job::memory::{ByteSize, MemoryBudget};
use eddy_core::memory::Pools;
use eddy_net::{DataPlane, PeerEvent};

const WAIT: Duration = Duration::from_secs(10);

fn pools() -> Arc<Pools> {
    Arc::new(Pools::new(&MemoryBudget {
        process: ByteSize(1 << 30),
        network: ByteSize(64 << 20),
        managed: ByteSize(1 << 20),
        wasm: ByteSize(1 << 20),
    }))
}

fn plane(name: &str) -> DataPlane {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    DataPlane::bind(name, 1, any).expect("bind")
}

fn batch(tag: usize, bytes: usize) -> Batch {
    let mut b = Batch::default();
    let value = format!("{tag:08}{}", "x".repeat(bytes.saturating_sub(8)));
    b.push_value(value.as_bytes()).expect("fits");
    b
}

/// The next message of `channel`, failing the test after [`WAIT`].
fn next(channel: &Channel) -> (u32, Message) {
    channel
        .recv_timeout(WAIT)
        .expect("open")
        .expect("a message within the wait")
}

#[test]
fn batches_and_control_messages_arrive_in_order_with_their_sender() {
    let (a, b) = (plane("a"), plane("b"));
    let inbound = Arc::new(Channel::new(1 << 20, pools()));
    b.register_inlet(7, inbound.clone(), 3, 1 << 16);
    let out = a.outlet("b", b.local_addr(), 7, 1 << 16).expect("outlet");
    assert_eq!(out.capacity(), 1 << 16);
    let sent = vec![
        Message::Data(batch(1, 100)),
        Message::Watermark(42),
        Message::Idle(true),
        Message::Idle(false),
        Message::Data(batch(2, 5000)),
        Message::Barrier(9),
        Message::Data(batch(3, 10)),
        Message::EndOfInput,
    ];
    for m in &sent {
        out.send(0, m.clone()).expect("send");
    }
    for m in &sent {
        assert_eq!(&next(&inbound), &(3, m.clone()));
    }
}

#[test]
fn a_sender_waits_for_credit_so_the_receiver_never_holds_more_than_its_window() {
    let (a, b) = (plane("a"), plane("b"));
    let inbound = Arc::new(Channel::new(1 << 20, pools()));
    let window = 4096;
    b.register_inlet(1, inbound.clone(), 0, window);
    let out = a.outlet("b", b.local_addr(), 1, window).expect("outlet");
    let sender = std::thread::spawn(move || {
        let mut waited = Duration::ZERO;
        for i in 0..40 {
            waited += out.send(0, Message::Data(batch(i, 1000))).expect("send");
        }
        waited
    });
    // Nothing is read for a while: the sender runs out of credit and says so.
    let deadline = Instant::now() + WAIT;
    while b.backlog(1) == 0 {
        assert!(Instant::now() < deadline, "no backlog announced");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        inbound.queued_bytes() <= window,
        "{}",
        inbound.queued_bytes()
    );
    for i in 0..40 {
        assert!(
            inbound.queued_bytes() <= window,
            "{}",
            inbound.queued_bytes()
        );
        let (_, m) = next(&inbound);
        assert_eq!(m, Message::Data(batch(i, 1000)));
    }
    let waited = sender.join().expect("sender");
    assert!(
        waited > Duration::ZERO,
        "the sender never waited for credit"
    );
}

#[test]
fn a_backpressured_channel_does_not_stall_another_on_the_same_connection() {
    let (a, b) = (plane("a"), plane("b"));
    let blocked = Arc::new(Channel::new(1 << 20, pools()));
    let flowing = Arc::new(Channel::new(1 << 20, pools()));
    b.register_inlet(1, blocked.clone(), 0, 2048);
    b.register_inlet(2, flowing.clone(), 0, 2048);
    let stuck = a.outlet("b", b.local_addr(), 1, 2048).expect("outlet 1");
    let free = a.outlet("b", b.local_addr(), 2, 2048).expect("outlet 2");
    // Channel 1's reader reads nothing: its sender blocks once its window is used.
    let stuck_sender = std::thread::spawn(move || {
        for i in 0..10 {
            stuck.send(0, Message::Data(batch(i, 1000))).expect("send");
        }
    });
    // Meanwhile channel 2 carries fifty times its window.
    let free_sender = std::thread::spawn(move || {
        for i in 0..100 {
            free.send(0, Message::Data(batch(i, 1000))).expect("send");
        }
    });
    for i in 0..100 {
        assert_eq!(next(&flowing).1, Message::Data(batch(i, 1000)));
    }
    free_sender.join().expect("free sender");
    assert!(
        !stuck_sender.is_finished(),
        "channel 1 had no room for all of it"
    );
    for i in 0..10 {
        assert_eq!(next(&blocked).1, Message::Data(batch(i, 1000)));
    }
    stuck_sender.join().expect("stuck sender");
}

#[test]
fn an_unaligned_barrier_overtakes_what_is_in_flight_and_returns_copies() {
    let (a, b) = (plane("a"), plane("b"));
    let inbound = Arc::new(Channel::new(1 << 20, pools()));
    b.register_inlet(5, inbound.clone(), 1, 1 << 16);
    let out = a.outlet("b", b.local_addr(), 5, 1 << 16).expect("outlet");
    let in_flight: Vec<Message> = (0..3).map(|i| Message::Data(batch(i, 200))).collect();
    for m in &in_flight {
        out.send(1, m.clone()).expect("send");
    }
    let overtaken = out.overtake(1, 11).expect("overtake");
    assert_eq!(overtaken, in_flight);
    assert_eq!(next(&inbound), (1, Message::Barrier(11)));
    for m in &in_flight {
        assert_eq!(next(&inbound), (1, m.clone()));
    }
}

#[test]
fn an_inlet_registered_after_the_sender_opened_still_grants_credit() {
    let (a, b) = (plane("a"), plane("b"));
    let out = a.outlet("b", b.local_addr(), 8, 1024).expect("outlet");
    let sender = std::thread::spawn(move || out.send(0, Message::Data(batch(1, 100))));
    std::thread::sleep(Duration::from_millis(100));
    let inbound = Arc::new(Channel::new(1 << 20, pools()));
    b.register_inlet(8, inbound.clone(), 0, 1024);
    assert_eq!(next(&inbound).1, Message::Data(batch(1, 100)));
    sender.join().expect("sender").expect("sent");
}

#[test]
fn a_lost_peer_fails_its_waiting_senders_and_is_reported() {
    let (a, b) = (plane("a"), plane("b"));
    let events = a.take_events().expect("events");
    let inbound = Arc::new(Channel::new(1 << 20, pools()));
    b.register_inlet(1, inbound.clone(), 0, 1024);
    let out = a.outlet("b", b.local_addr(), 1, 1024).expect("outlet");
    // Fill the window, then wait for credit that will never come.
    out.send(0, Message::Data(batch(0, 1000))).expect("send");
    let waiting = std::thread::spawn(move || out.send(0, Message::Data(batch(1, 1000))));
    std::thread::sleep(Duration::from_millis(50));
    let dropped = Instant::now();
    drop(b);
    let sent = waiting.join().expect("sender");
    assert!(sent.is_err(), "a send to a lost peer must fail");
    match events.recv_timeout(Duration::from_secs(1)) {
        Ok(PeerEvent::Lost { peer, .. }) => assert_eq!(peer, "b"),
        Err(RecvTimeoutError::Timeout) => panic!("the loss was not noticed within a second"),
        Err(e) => panic!("{e}"),
    }
    assert!(dropped.elapsed() < Duration::from_secs(1));
}

#[test]
fn nothing_crosses_before_the_receiver_opened_the_channel_not_even_a_watermark() {
    let (a, b) = (plane("a"), plane("b"));
    let events = b.take_events().expect("events");
    let out = a.outlet("b", b.local_addr(), 4, 1024).expect("outlet");
    // A control message costs no credit, but must still wait for the inlet.
    let sender = std::thread::spawn(move || {
        out.send(0, Message::Watermark(5))?;
        out.send(0, Message::EndOfInput)
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!sender.is_finished(), "it sent before the channel was open");
    let inbound = Arc::new(Channel::new(1 << 20, pools()));
    b.register_inlet(4, inbound.clone(), 2, 1024);
    assert_eq!(next(&inbound), (2, Message::Watermark(5)));
    assert_eq!(next(&inbound), (2, Message::EndOfInput));
    sender.join().expect("sender").expect("sent");
    assert!(events.try_recv().is_err(), "the connection broke");
}
