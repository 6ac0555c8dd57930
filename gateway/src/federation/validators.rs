//! HTTP tools' input schemas, compiled once per config generation and tool
//! (`jsonschema`), for the data path to check arguments against.

use std::sync::Arc;

use serde_json::Value;

/// Compiled input schemas, by config generation, upstream and tool.
#[derive(Default)]
pub struct Validators {
    map: dashmap::DashMap<String, Arc<jsonschema::Validator>>,
}

/// The key of one tool's schema under one config generation.
pub fn key(generation: u64, upstream: &str, tool: &str) -> String {
    format!("{generation}\0{upstream}\0{tool}")
}

impl Validators {
    pub fn get(
        &self,
        key: String,
        schema: &Value,
    ) -> std::result::Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.map.get(&key) {
            return Ok(v.clone());
        }
        let v = Arc::new(jsonschema::validator_for(schema).map_err(|e| e.to_string())?);
        if self.map.len() > 10_000 {
            self.map.clear();
        }
        self.map.insert(key, v.clone());
        Ok(v)
    }
}
