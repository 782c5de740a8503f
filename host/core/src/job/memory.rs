//! The `memory` section and byte sizes as job files write them (`512mb`, `1gb`).

use std::fmt;

use serde::Deserialize;

/// A byte count written as `512mb`, `1gb`, `64 MiB` or plain bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub usize);

impl ByteSize {
    /// Parses `text`: a number with an optional unit (b, kb, mb, gb; powers of 1024).
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim().to_ascii_lowercase();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a size like 512mb or 1gb"))?;
        let scale = match unit.trim() {
            "" | "b" => 1u64,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => return Err(format!("unknown size unit {other:?} in {text:?}")),
        };
        Ok(ByteSize((num * scale as f64) as usize))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if b >= (1u64 << 30) as f64 {
            write!(f, "{:.1} GiB", b / (1u64 << 30) as f64)
        } else if b >= (1u64 << 20) as f64 {
            write!(f, "{:.1} MiB", b / (1u64 << 20) as f64)
        } else if b >= 1024.0 {
            write!(f, "{:.1} KiB", b / 1024.0)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(ByteSize(b as usize)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// The `memory` section of a job file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MemorySpec {
    /// The whole process budget (default 1 GiB).
    pub process: Option<ByteSize>,
    /// Network buffers for exchanges (default 10% of the process budget).
    pub network: Option<ByteSize>,
    /// Operator state (default 30%).
    pub managed: Option<ByteSize>,
    /// WASM instance linear memory (default 40%).
    pub wasm: Option<ByteSize>,
}

/// The budget split into pool sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The whole process budget.
    pub process: ByteSize,
    /// Network buffers.
    pub network: ByteSize,
    /// Operator state.
    pub managed: ByteSize,
    /// WASM linear memory.
    pub wasm: ByteSize,
}

/// Process budget when a job does not set one.
pub const DEFAULT_PROCESS: ByteSize = ByteSize(1 << 30);

impl MemorySpec {
    /// Splits the budget; explicit pools must fit in the process budget with the rest
    /// (20% at least) left for the host's own heap.
    pub fn budget(&self) -> Result<MemoryBudget, String> {
        let process = self.process.unwrap_or(DEFAULT_PROCESS);
        let part = |explicit: Option<ByteSize>, percent: usize| {
            explicit.unwrap_or(ByteSize(process.0 / 100 * percent))
        };
        let budget = MemoryBudget {
            process,
            network: part(self.network, 10),
            managed: part(self.managed, 30),
            wasm: part(self.wasm, 40),
        };
        let pools = budget.network.0 + budget.managed.0 + budget.wasm.0;
        if pools > process.0 / 10 * 8 {
            return Err(format!(
                "network ({}) + managed ({}) + wasm ({}) = {} leave less than 20% of the \
                 process budget ({}) for the host itself",
                budget.network,
                budget.managed,
                budget.wasm,
                ByteSize(pools),
                process
            ));
        }
        if budget.network.0 < 1 << 20 {
            return Err(format!(
                "network memory {} is below the minimum of 1 MiB",
                budget.network
            ));
        }
        Ok(budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("512mb"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1 GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("1.5k"), Ok(ByteSize(1536)));
        assert_eq!(ByteSize::parse("100"), Ok(ByteSize(100)));
        assert!(ByteSize::parse("12 parsecs").is_err());
    }

    #[test]
    fn budget_defaults_and_overcommit() {
        let b = MemorySpec::default().budget().unwrap();
        assert_eq!(b.network, ByteSize((1 << 30) / 100 * 10));
        let over = MemorySpec {
            process: Some(ByteSize(100 << 20)),
            wasm: Some(ByteSize(90 << 20)),
            ..MemorySpec::default()
        };
        assert!(over.budget().unwrap_err().contains("less than 20%"));
    }
}
