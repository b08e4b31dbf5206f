//! Which accepted connections the server takes on: at most `max` at once, at most `per_address`
//! from one client address (an IPv6 client by its /64, which one subscriber usually holds
//! whole), and, when the server is full, room made by closing the connection that has waited
//! longest without sending a byte.
//!
//! Why eviction rather than queueing: a flood of connections that never speak would otherwise
//! hold every slot until their first-byte timeout, and real clients would wait behind them. A
//! real client sends its request within a round trip of connecting, so it is never the oldest
//! silent connection while a flood is going on. Every decision is made at once; the accept
//! loop never waits on a client.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The part of a client address that counts as one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4([u8; 4]),
    /// The /64 prefix.
    V6([u8; 8]),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    ClientKey::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// Why a connection was not taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Its client already holds `per_address` connections.
    PerAddress,
    /// The server holds `max` connections and none of them is silent.
    Full,
}

#[derive(Debug, Default)]
struct Books {
    /// Open connections per client; entries at zero are removed.
    per_client: HashMap<ClientKey, u32>,
    /// Connections that have not sent a byte yet, oldest first.
    silent: BTreeMap<u64, CancellationToken>,
}

/// The connection limits of one listener.
#[derive(Debug)]
pub(super) struct Admission {
    slots: Arc<Semaphore>,
    max: u32,
    per_address: u32,
    next_id: AtomicU64,
    books: Mutex<Books>,
}

impl Admission {
    /// `max` connections at once (at least one), `per_address` from one client (at least one).
    pub(super) fn new(max: usize, per_address: usize) -> Arc<Self> {
        let max = u32::try_from(max.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        let per_address = u32::try_from(per_address.max(1)).unwrap_or(u32::MAX);
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            per_address,
            next_id: AtomicU64::new(0),
            books: Mutex::default(),
        })
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        // Plain counters: a panic elsewhere cannot leave them half-updated.
        crate::locks::lock(&self.books)
    }

    /// Takes on a connection from `ip`, evicting the oldest silent connection when the server
    /// is full. The ticket counts as silent until [`Ticket::spoke`].
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let key = ClientKey::from(ip);
        let mut books = self.books();
        if books.per_client.get(&key).copied().unwrap_or(0) >= self.per_address {
            return Err(Refusal::PerAddress);
        }
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let Some((_, oldest)) = books.silent.pop_first() else {
                    return Err(Refusal::Full);
                };
                // The evicted connection gives its slot back when its task sees the token
                // (on its own thread, soon); until then this one borrows it. The semaphore
                // can be over by at most the connections evicted but not yet gone.
                oldest.cancel();
                self.slots.add_permits(1);
                Arc::clone(&self.slots).try_acquire_owned().map_err(|_| Refusal::Full)?
            }
        };
        *books.per_client.entry(key).or_insert(0) += 1;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        books.silent.insert(id, evicted.clone());
        Ok(Ticket { admission: Arc::clone(self), key, id, evicted, permit: Some(permit) })
    }

    /// Waits until every connection has given its slot back (a drain).
    pub(super) async fn all_closed(&self) {
        let _ = self.slots.acquire_many(self.max).await;
    }
}

/// One admitted connection; gives its place back when dropped.
#[derive(Debug)]
pub(super) struct Ticket {
    admission: Arc<Admission>,
    key: ClientKey,
    id: u64,
    evicted: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
}

impl Ticket {
    /// Fires when the server closes this connection to make room for another.
    pub(super) fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    /// The client sent something: no longer a candidate for eviction.
    pub(super) fn spoke(&self) {
        self.admission.books().silent.remove(&self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut books = self.admission.books();
        // Only eviction cancels the token, and eviction takes the entry out of `silent`.
        let was_evicted = books.silent.remove(&self.id).is_none() && self.evicted.is_cancelled();
        if let Some(n) = books.per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                books.per_client.remove(&self.key);
            }
        }
        drop(books);
        let permit = self.permit.take();
        if was_evicted {
            // The slot was lent to the connection that evicted this one: retire it rather
            // than return it, so the total stays at `max`.
            if let Some(p) = permit {
                p.forget();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_limit_counts_ipv4_and_ipv6_prefixes() {
        let a = Admission::new(100, 2);
        let t1 = a.admit(ip("10.0.0.1")).unwrap();
        let _t2 = a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerAddress);
        assert!(a.admit(ip("10.0.0.2")).is_ok(), "another address has its own count");
        // The IPv4-mapped form is the same client.
        assert_eq!(a.admit(ip("::ffff:10.0.0.1")).unwrap_err(), Refusal::PerAddress);
        drop(t1);
        assert!(a.admit(ip("10.0.0.1")).is_ok(), "a closed connection frees its place");

        let _v1 = a.admit(ip("2001:db8:1:2::1")).unwrap();
        let _v2 = a.admit(ip("2001:db8:1:2::ffff")).unwrap();
        assert_eq!(a.admit(ip("2001:db8:1:2:aaaa::1")).unwrap_err(), Refusal::PerAddress);
        assert!(a.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
    }

    #[test]
    fn a_full_server_evicts_its_oldest_silent_connection() {
        let a = Admission::new(2, 10);
        let old = a.admit(ip("10.0.0.1")).unwrap();
        let talker = a.admit(ip("10.0.0.2")).unwrap();
        talker.spoke();
        let new = a.admit(ip("10.0.0.3")).unwrap();
        assert!(old.evicted().is_cancelled(), "the silent one made room");
        assert!(!talker.evicted().is_cancelled(), "a connection that spoke is never evicted");
        drop(old);
        // `new` is silent now, `talker` is not: the next arrival evicts `new`.
        let newer = a.admit(ip("10.0.0.4")).unwrap();
        assert!(new.evicted().is_cancelled());
        newer.spoke();
        drop(new);
        // Nothing silent left and the server is full.
        assert_eq!(a.admit(ip("10.0.0.5")).unwrap_err(), Refusal::Full);
        drop(talker);
        assert!(a.admit(ip("10.0.0.5")).is_ok());
    }

    #[tokio::test]
    async fn slots_add_up_after_evictions() {
        let a = Admission::new(3, 10);
        let mut held: Vec<Ticket> =
            (0..3).map(|i| a.admit(ip(&format!("10.0.1.{i}"))).unwrap()).collect();
        for round in 0..20 {
            let t = a.admit(ip(&format!("10.0.2.{round}"))).unwrap();
            held.retain(|h| !h.evicted().is_cancelled());
            held.push(t);
            assert_eq!(held.len(), 3, "still three connections held");
        }
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(1), a.all_closed())
            .await
            .expect("every slot back, none lost or extra");
        assert_eq!(a.slots.available_permits(), 3, "exactly `max` slots, none lost or extra");
    }
}
