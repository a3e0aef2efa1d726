use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;

use crate::contract::fingerprint;
use crate::Contract;

/// The writer schemas a reader knows, by fingerprint.
///
/// Avro data names its writer schema by fingerprint (single-object encoding). A consumer built
/// against today's contracts can still read what an older producer wrote, as long as that older
/// schema is registered here; [`SchemaRegistry::current`] holds the schemas this build writes.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    writers: HashMap<[u8; 8], Arc<Schema>>,
}

impl SchemaRegistry {
    /// A registry of the schemas compiled into this build.
    pub fn current() -> Self {
        let writers = Contract::ALL
            .iter()
            .map(|c| (c.fingerprint(), Arc::new(c.schema().clone())))
            .collect();
        Self { writers }
    }

    /// Adds a writer schema (typically an older version of a contract) so its data can be read.
    pub fn register_writer(&mut self, schema: Schema) -> [u8; 8] {
        let fp = fingerprint(&schema);
        self.writers.insert(fp, Arc::new(schema));
        fp
    }

    /// The writer schema with this fingerprint.
    pub fn writer(&self, fingerprint: &[u8; 8]) -> Option<&Schema> {
        self.writers.get(fingerprint).map(Arc::as_ref)
    }
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::current()
    }
}
