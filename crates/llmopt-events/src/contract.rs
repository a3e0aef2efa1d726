use std::sync::LazyLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One of the event contracts in `schemas/`. Having them as an enum lets the registry, the CLI
/// and the tests walk every contract without a list that can drift from the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contract {
    LlmCall,
    WindowAggregate,
    Anomaly,
    Alert,
    Decision,
    ConfigChange,
    QuantizationJob,
    ArtifactPublished,
    QuantizationFailed,
    DeadLetter,
}

struct Parsed {
    schema: Schema,
    fingerprint: [u8; 8],
    /// Reads data written with this very schema, its names resolved once (a plain
    /// `from_avro_datum` resolves them again for every datum).
    reader: apache_avro::GenericSingleObjectReader,
}

/// The single-object header of a schema: marker `C3 01` and its fingerprint.
struct SingleObjectHeader([u8; 8]);

impl apache_avro::headers::HeaderBuilder for SingleObjectHeader {
    fn build_header(&self) -> Vec<u8> {
        let mut header = vec![0xC3, 0x01];
        header.extend_from_slice(&self.0);
        header
    }
}

macro_rules! contracts {
    ($($variant:ident => $file:literal, $ce_type:literal;)*) => {
        impl Contract {
            /// Every contract, in a fixed order.
            pub const ALL: &'static [Contract] = &[$(Contract::$variant),*];

            /// File name of the contract under `schemas/`.
            pub fn file_name(self) -> &'static str {
                match self { $(Contract::$variant => concat!($file, ".avsc")),* }
            }

            /// The `.avsc` text as committed, compiled into the binary so a deployed service
            /// always carries the contract it was built against.
            pub fn source(self) -> &'static str {
                match self {
                    $(Contract::$variant => include_str!(concat!("../../../schemas/", $file, ".avsc"))),*
                }
            }

            /// CloudEvents `type` of events of this contract.
            pub fn ce_type(self) -> &'static str {
                match self { $(Contract::$variant => $ce_type),* }
            }

            /// The contract a CloudEvents `type` names, if any.
            pub fn from_ce_type(ce_type: &str) -> Option<Contract> {
                match ce_type { $($ce_type => Some(Contract::$variant),)* _ => None }
            }
        }
    };
}

contracts! {
    LlmCall => "llm_call", "io.llmopt.llm_call.v1";
    WindowAggregate => "window_aggregate", "io.llmopt.window_aggregate.v1";
    Anomaly => "anomaly", "io.llmopt.anomaly.v1";
    Alert => "alert", "io.llmopt.alert.v1";
    Decision => "decision", "io.llmopt.decision.v1";
    ConfigChange => "config_change", "io.llmopt.config_change.v1";
    QuantizationJob => "quantization_job", "io.llmopt.quantization_job.v1";
    ArtifactPublished => "artifact_published", "io.llmopt.artifact_published.v1";
    QuantizationFailed => "quantization_failed", "io.llmopt.quantization_failed.v1";
    DeadLetter => "dead_letter", "io.llmopt.dead_letter.v1";
}

static PARSED: LazyLock<Vec<Parsed>> = LazyLock::new(|| {
    Contract::ALL
        .iter()
        .map(|c| {
            // The sources are compiled in and checked by the `every_schema_parses` test, so a
            // failure here is a build defect, not bad input.
            let schema = Schema::parse_str(c.source())
                .unwrap_or_else(|e| panic!("schemas/{} does not parse: {e}", c.file_name()));
            let fingerprint = fingerprint(&schema);
            let reader = apache_avro::GenericSingleObjectReader::new_with_header_builder(
                schema.clone(),
                SingleObjectHeader(fingerprint),
            )
            .unwrap_or_else(|e| panic!("schemas/{} does not resolve: {e}", c.file_name()));
            Parsed {
                schema,
                fingerprint,
                reader,
            }
        })
        .collect()
});

impl Contract {
    fn parsed(self) -> &'static Parsed {
        &PARSED[self as usize]
    }

    /// The parsed schema: the writer schema for everything llmopt produces and the reader
    /// schema for everything it consumes.
    pub fn schema(self) -> &'static Schema {
        &self.parsed().schema
    }

    /// CRC-64-AVRO fingerprint of the schema's canonical form, as used by Avro single-object
    /// encoding to name the writer schema.
    pub fn fingerprint(self) -> [u8; 8] {
        self.parsed().fingerprint
    }

    /// Reader of single-object data written with this schema (header included).
    pub(crate) fn same_schema_reader(self) -> &'static apache_avro::GenericSingleObjectReader {
        &self.parsed().reader
    }

    /// Full Avro name, e.g. `llmopt.events.LlmCall`.
    pub fn full_name(self) -> String {
        match self.schema() {
            Schema::Record(r) => r.name.fullname(None),
            _ => self.file_name().to_string(),
        }
    }
}

/// CRC-64-AVRO (Rabin) fingerprint of a schema, little-endian as single-object encoding wants.
pub fn fingerprint(schema: &Schema) -> [u8; 8] {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

/// A Rust type bound to one contract. Implemented by every event struct so generic code can find
/// its schema and CloudEvents type.
pub trait EventType: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The contract this type implements.
    const CONTRACT: Contract;
}
