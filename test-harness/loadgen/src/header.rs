//! Extra request metadata given on the command line as `key:value`.

use std::{fmt, str::FromStr};

use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};

/// One ASCII metadata entry sent with every call, e.g. `x-canary:true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataHeader {
    key: MetadataKey<Ascii>,
    value: MetadataValue<Ascii>,
}

impl MetadataHeader {
    /// The (lower-case) header name.
    pub fn key(&self) -> &str {
        self.key.as_str()
    }

    /// Adds this entry to a request's metadata, keeping any existing values.
    pub fn append_to(&self, metadata: &mut MetadataMap) {
        metadata.append(self.key.clone(), self.value.clone());
    }
}

impl FromStr for MetadataHeader {
    type Err = String;

    /// Parses `key:value`; the key is lower-cased and both sides are trimmed.
    /// Only the first `:` separates, so values may contain colons.
    fn from_str(text: &str) -> Result<Self, String> {
        let (key, value) = text
            .split_once(':')
            .ok_or_else(|| format!("header `{text}` must look like key:value"))?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(format!("header `{text}` has an empty name"));
        }
        let key = MetadataKey::from_bytes(key.as_bytes())
            .map_err(|_| format!("header name `{key}` is not a valid ASCII metadata key"))?;
        let value = MetadataValue::try_from(value.trim())
            .map_err(|_| format!("header value in `{text}` is not printable ASCII"))?;
        Ok(Self { key, value })
    }
}

impl fmt::Display for MetadataHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value.to_str().unwrap_or("<non-ascii>");
        write!(f, "{}:{value}", self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_and_value() {
        let header: MetadataHeader = "x-canary:true".parse().unwrap();
        assert_eq!(header.key(), "x-canary");
        assert_eq!(header.to_string(), "x-canary:true");
    }

    #[test]
    fn lower_cases_the_key_and_trims_both_sides() {
        let header: MetadataHeader = " X-Tenant : acme ".parse().unwrap();
        assert_eq!(header.to_string(), "x-tenant:acme");
    }

    #[test]
    fn value_may_contain_colons() {
        let header: MetadataHeader = "x-upstream:10.0.0.1:50051".parse().unwrap();
        assert_eq!(header.to_string(), "x-upstream:10.0.0.1:50051");
    }

    #[test]
    fn rejects_malformed_headers() {
        assert!("no-colon".parse::<MetadataHeader>().is_err());
        assert!(":value".parse::<MetadataHeader>().is_err());
        assert!("bad key:value".parse::<MetadataHeader>().is_err());
        assert!("x-data-bin:AAAA".parse::<MetadataHeader>().is_err());
        assert!("x-line:a\nb".parse::<MetadataHeader>().is_err());
    }

    #[test]
    fn appends_to_request_metadata() {
        let mut metadata = MetadataMap::new();
        "x-a:1"
            .parse::<MetadataHeader>()
            .unwrap()
            .append_to(&mut metadata);
        "x-a:2"
            .parse::<MetadataHeader>()
            .unwrap()
            .append_to(&mut metadata);
        let values: Vec<_> = metadata.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
    }
}
