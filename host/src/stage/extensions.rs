//! Services shared by the stages of one pipeline that the engine carries
//! without knowing them (for example the Kafka transaction of an
//! exactly-once pipeline, which its Kafka sources and sinks share): a map
//! from type to one shared value, like axum's extensions.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// Shared services by type; cheap to clone.
#[derive(Clone, Default)]
pub struct Extensions {
    map: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.map.len())
            .finish()
    }
}

impl Extensions {
    /// Adds `value`, replacing one of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        Arc::make_mut(&mut self.map).insert(TypeId::of::<T>(), value);
    }

    /// The shared `T`, if the pipeline has one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.map
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_type() {
        let mut e = Extensions::default();
        assert!(e.get::<String>().is_none());
        e.insert(Arc::new("shared".to_owned()));
        e.insert(Arc::new(7u32));
        assert_eq!(
            e.get::<String>().as_deref().map(String::as_str),
            Some("shared")
        );
        assert_eq!(e.get::<u32>().as_deref(), Some(&7));
    }
}
