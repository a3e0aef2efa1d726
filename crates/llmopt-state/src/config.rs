use serde::{Deserialize, Serialize};

/// Which state store backs the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// In process memory: nothing survives a restart (`llmopt demo`).
    #[default]
    Embedded,
    /// A Redis server.
    Redis,
}

/// State store settings (`[state]` in the config file, `LLMOPT_STATE__*` in the environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateConfig {
    /// Embedded or Redis.
    pub kind: StateKind,
    /// `redis://[:password@]host:port[/db]`, or `rediss://` for TLS.
    pub redis_url: String,
    /// Password for Redis AUTH, overriding one in `redis_url`: lets a deployment keep the URL in
    /// plain configuration and the password in a secret (`LLMOPT_STATE__REDIS_PASSWORD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_password: Option<String>,
    /// Prefix of every key, so several installations can share one Redis.
    pub key_prefix: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            kind: StateKind::Embedded,
            redis_url: "redis://127.0.0.1:6379/".to_string(),
            redis_password: None,
            key_prefix: "llmopt:".to_string(),
        }
    }
}
