//! The Redis state store.
//!
//! Every multi-step operation is one Lua script, so it is atomic on the server whatever the
//! number of clients: a versioned value is a hash `{v, d}`, a TTL set is a sorted set scored by
//! each member's expiry (server time, so clients' clocks do not matter), a checkpoint is one hash
//! written by a single `HSET`.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::{CasOutcome, Checkpoint, StateConfig, StateError, StateStore, Versioned, SET_BATCH};

const CAS: &str = r"
local cur = redis.call('HGET', KEYS[1], 'v')
local expected = tonumber(ARGV[1])
local current = 0
if cur then current = tonumber(cur) end
if current ~= expected then
  return {0, current, redis.call('HGET', KEYS[1], 'd')}
end
redis.call('HSET', KEYS[1], 'v', expected + 1, 'd', ARGV[2])
return {1, expected + 1}
";

const PUT: &str = r"
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'd', ARGV[1])
return v
";

const SERVER_NOW_MS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

const SET_ADD: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[2])
local added = redis.call('ZADD', KEYS[1], 'NX', now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return added
";

const SET_CONTAINS: &str = r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then return 1 end
return 0
";

const SET_ADD_MANY: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'NX', now + ttl, ARGV[i])
end
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return #ARGV - 1
";

const SET_CONTAINS_MANY: &str = r"
local found = {}
for i = 1, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now then found[i] = 1 else found[i] = 0 end
end
return found
";

const SET_LEN: &str = r"
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
";

/// State store on a Redis server, shared by any number of service replicas.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    cas: Script,
    put: Script,
    set_add: Script,
    set_contains: Script,
    set_len: Script,
    set_add_many: Script,
    set_contains_many: Script,
}

impl RedisStore {
    /// Connects to `config.redis_url`; the connection manager reconnects by itself.
    pub async fn connect(config: &StateConfig) -> Result<Self, StateError> {
        let mut info: redis::ConnectionInfo = config.redis_url.parse()?;
        if let Some(password) = &config.redis_password {
            info.redis.password = Some(password.clone());
        }
        let client = redis::Client::open(info)?;
        // One direct connection first: a wrong password or an unreachable server is reported
        // at once instead of after the manager's reconnection backoff.
        let mut probe = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| {
            StateError::Config(format!("no answer from {}", redacted(&config.redis_url)))
        })??;
        let _: () = redis::cmd("PING").query_async(&mut probe).await?;
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(5)
            .set_max_delay(2_000)
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(Duration::from_secs(10));
        let connection = ConnectionManager::new_with_config(client, manager_config).await?;
        let with_now = |body: &str| Script::new(&format!("{SERVER_NOW_MS}{body}"));
        Ok(Self {
            connection,
            prefix: config.key_prefix.clone(),
            cas: Script::new(CAS),
            put: Script::new(PUT),
            set_add: with_now(SET_ADD),
            set_contains: with_now(SET_CONTAINS),
            set_len: with_now(SET_LEN),
            set_add_many: with_now(SET_ADD_MANY),
            set_contains_many: with_now(SET_CONTAINS_MANY),
        })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }
}

/// The URL without its password, for error messages and logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[async_trait]
impl StateStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StateError> {
        let redis_key = self.key("kv", key);
        let mut conn = self.connection.clone();
        let (version, value): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&redis_key)
            .arg("v")
            .arg("d")
            .query_async(&mut conn)
            .await?;
        match (version, value) {
            (None, _) => Ok(None),
            (Some(version), Some(value)) => Ok(Some(Versioned { version, value })),
            (Some(_), None) => Err(StateError::Corrupt {
                key: redis_key,
                reason: "version without data".into(),
            }),
        }
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected_version: u64,
        value: &[u8],
    ) -> Result<CasOutcome, StateError> {
        let mut conn = self.connection.clone();
        // Lua drops a trailing nil, so the reply has two or three elements.
        let reply: Vec<redis::Value> = self
            .cas
            .key(self.key("kv", key))
            .arg(expected_version)
            .arg(value)
            .invoke_async(&mut conn)
            .await?;
        let corrupt = |reason: &str| StateError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let (applied, version) = match (reply.first(), reply.get(1)) {
            (Some(redis::Value::Int(a)), Some(redis::Value::Int(v))) => (*a == 1, *v as u64),
            _ => return Err(corrupt("unexpected compare-and-set reply")),
        };
        if applied {
            return Ok(CasOutcome::Applied { version });
        }
        let current = match reply.get(2) {
            Some(redis::Value::BulkString(value)) => Some(Versioned {
                version,
                value: value.clone(),
            }),
            _ => None,
        };
        Ok(CasOutcome::Conflict { current })
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<u64, StateError> {
        let mut conn = self.connection.clone();
        Ok(self
            .put
            .key(self.key("kv", key))
            .arg(value)
            .invoke_async(&mut conn)
            .await?)
    }

    async fn delete(&self, key: &str) -> Result<bool, StateError> {
        let mut conn = self.connection.clone();
        let removed: u64 = conn.del(self.key("kv", key)).await?;
        Ok(removed > 0)
    }

    async fn set_add(&self, set: &str, member: &str, ttl: Duration) -> Result<bool, StateError> {
        let mut conn = self.connection.clone();
        let added: u64 = self
            .set_add
            .key(self.key("set", set))
            .arg(member)
            .arg(ttl_ms(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(added == 1)
    }

    async fn set_contains(&self, set: &str, member: &str) -> Result<bool, StateError> {
        let mut conn = self.connection.clone();
        let found: u64 = self
            .set_contains
            .key(self.key("set", set))
            .arg(member)
            .invoke_async(&mut conn)
            .await?;
        Ok(found == 1)
    }

    async fn set_add_many(
        &self,
        set: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<(), StateError> {
        let key = self.key("set", set);
        let mut conn = self.connection.clone();
        for batch in members.chunks(SET_BATCH) {
            let _: u64 = self
                .set_add_many
                .key(&key)
                .arg(ttl_ms(ttl))
                .arg(batch)
                .invoke_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    async fn set_contains_many(
        &self,
        set: &str,
        members: &[String],
    ) -> Result<Vec<bool>, StateError> {
        let key = self.key("set", set);
        let mut conn = self.connection.clone();
        let mut found = Vec::with_capacity(members.len());
        for batch in members.chunks(SET_BATCH) {
            let flags: Vec<u8> = self
                .set_contains_many
                .key(&key)
                .arg(batch)
                .invoke_async(&mut conn)
                .await?;
            if flags.len() != batch.len() {
                return Err(StateError::Corrupt {
                    key,
                    reason: format!("{} answers to {} members", flags.len(), batch.len()),
                });
            }
            found.extend(flags.into_iter().map(|f| f == 1));
        }
        Ok(found)
    }

    async fn set_len(&self, set: &str) -> Result<u64, StateError> {
        let mut conn = self.connection.clone();
        Ok(self
            .set_len
            .key(self.key("set", set))
            .invoke_async(&mut conn)
            .await?)
    }

    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StateError> {
        let offsets = serde_json::to_vec(&checkpoint.offsets).map_err(|e| StateError::Corrupt {
            key: name.to_string(),
            reason: e.to_string(),
        })?;
        let mut conn = self.connection.clone();
        // One HSET writes both fields atomically.
        let _: () = redis::cmd("HSET")
            .arg(self.key("checkpoint", name))
            .arg("state")
            .arg(&checkpoint.state)
            .arg("offsets")
            .arg(offsets)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StateError> {
        let key = self.key("checkpoint", name);
        let mut conn = self.connection.clone();
        let (state, offsets): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("state")
            .arg("offsets")
            .query_async(&mut conn)
            .await?;
        let (Some(state), Some(offsets)) = (state, offsets) else {
            return Ok(None);
        };
        let offsets = serde_json::from_slice(&offsets).map_err(|e| StateError::Corrupt {
            key,
            reason: format!("offsets are not valid JSON: {e}"),
        })?;
        Ok(Some(Checkpoint { state, offsets }))
    }
}
