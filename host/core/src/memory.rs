//! The process memory budget and its pools: network buffers, managed memory (operator
//! state) and WASM instance memory. Each pool is bounded and metered; running out is
//! backpressure (network) or a clear error (managed, WASM), never an OOM kill.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::job::memory::{ByteSize, MemoryBudget};

/// One bounded, metered pool of bytes.
#[derive(Debug)]
pub struct MemoryPool {
    name: &'static str,
    capacity: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
}

/// A pool had no room for a reservation.
#[derive(Debug, thiserror::Error)]
#[error("{pool} memory exhausted: {requested} more wanted with {used} of {capacity} in use")]
pub struct PoolExhausted {
    /// Name of the pool.
    pub pool: &'static str,
    /// Bytes asked for.
    pub requested: ByteSize,
    /// Bytes in use at the time.
    pub used: ByteSize,
    /// The pool's size.
    pub capacity: ByteSize,
}

impl MemoryPool {
    /// A pool of `capacity` bytes.
    pub fn new(name: &'static str, capacity: ByteSize) -> Self {
        MemoryPool {
            name,
            capacity: capacity.0,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Reserves `bytes`, or fails without reserving anything.
    pub fn try_reserve(&self, bytes: usize) -> Result<(), PoolExhausted> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > self.capacity {
                return Err(PoolExhausted {
                    pool: self.name,
                    requested: ByteSize(bytes),
                    used: ByteSize(used),
                    capacity: ByteSize(self.capacity),
                });
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return Ok(());
                }
                Err(actual) => used = actual,
            }
        }
    }

    /// Returns `bytes` reserved earlier.
    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Name of the pool.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Size of the pool.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes in use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Most bytes ever in use at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// The three pools of a process.
#[derive(Debug)]
pub struct Pools {
    /// Exchange buffers.
    pub network: MemoryPool,
    /// Operator state.
    pub managed: MemoryPool,
    /// WASM linear memory.
    pub wasm: MemoryPool,
}

impl Pools {
    /// Pools sized by `budget`.
    pub fn new(budget: &MemoryBudget) -> Self {
        Pools {
            network: MemoryPool::new("network", budget.network),
            managed: MemoryPool::new("managed", budget.managed),
            wasm: MemoryPool::new("wasm", budget.wasm),
        }
    }

    /// All pools, for metrics.
    pub fn all(&self) -> [&MemoryPool; 3] {
        [&self.network, &self.managed, &self.wasm]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_never_exceed_capacity() {
        let pool = MemoryPool::new("t", ByteSize(100));
        pool.try_reserve(60).unwrap();
        assert!(pool.try_reserve(41).is_err());
        pool.try_reserve(40).unwrap();
        pool.release(50);
        assert_eq!((pool.used(), pool.peak()), (50, 100));
    }
}
