//! How every tool reaches the cluster: the bootstrap brokers and librdkafka properties.
//!
//! Precedence, lowest first: librdkafka's own defaults, the defaults a command picks for its
//! job (a throughput-tuned producer for `bench`, a bounded delivery timeout for `produce`),
//! then the user's `-X key=value` properties, so an operator can always override us.

use std::time::Duration;

use rdkafka::ClientConfig;

/// How long admin requests and metadata look-ups may take before a tool gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// Connection flags shared by every tool. (A plain comment: clap would take a doc comment on a
// flattened struct as the about text of every command that flattens it.)
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(
        long,
        short = 'b',
        env = "COMMERCE_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub brokers: String,

    /// A librdkafka property, repeatable: -X key=value (e.g. -X security.protocol=ssl).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value, global = true)]
    pub properties: Vec<(String, String)>,
}

impl ConnectionArgs {
    /// A client configuration: bootstrap brokers, then `defaults`, then the user's `-X`.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Parses `key=value` (the value may itself contain `=`).
pub fn parse_key_value(input: &str) -> Result<(String, String), String> {
    match input.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected key=value, got `{input}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_key_value;

    #[test]
    fn key_value_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_key_value("sasl.jaas=a=b"),
            Ok(("sasl.jaas".to_owned(), "a=b".to_owned()))
        );
        assert_eq!(
            parse_key_value("linger.ms="),
            Ok(("linger.ms".to_owned(), String::new()))
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=value").is_err());
    }
}
